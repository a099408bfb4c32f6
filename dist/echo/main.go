// agency-echo: the tiny agency workload that govpaas's tests and demo run on a real node.
//
// It answers every request with a JSON document naming itself (ECHO_NAME, else the host name) and
// echoing the request (method, path, headers, the client's address, and the verified client
// certificate's subject when it serves TLS), so a test can tell which Pod answered and what the
// LGSP gateway forwarded. /healthz answers "ok" for probes.
//
// Ports: ECHO_PORTS (comma-separated, default 8080) serve plain HTTP; ECHO_TLS_PORTS serve HTTPS with
// ECHO_TLS_CERT and ECHO_TLS_KEY, asking for a client certificate when ECHO_TLS_CLIENT_CA is set.
//
// The same binary is the client the tests run inside Pods with `kubectl exec` (the image has no shell):
//
//	agency-echo connect HOST:PORT [TIMEOUT]   one TCP connection; exit 0 if it opened, 1 if not
//	agency-echo lookup NAME                   resolve NAME with the Pod's DNS; exit 1 if it fails
//	agency-echo get URL [--cert F --key F --ca F] [--connect HOST:PORT] [--timeout D]
//	                                          one HTTP(S) GET, printing the status line and the body;
//	                                          --connect dials that address for the URL's host (like
//	                                          curl --connect-to), the URL's host still naming the server
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

// version is stamped by `cargo xtask images` (-X main.version=…): the workspace's version.
var version = "dev"

type answer struct {
	Name          string              `json:"name"`
	Pod           string              `json:"pod,omitempty"`
	Namespace     string              `json:"namespace,omitempty"`
	Port          string              `json:"port"`
	Method        string              `json:"method"`
	Path          string              `json:"path"`
	Query         string              `json:"query,omitempty"`
	RemoteAddress string              `json:"remoteAddress"`
	ClientSubject string              `json:"clientSubject,omitempty"`
	Headers       map[string][]string `json:"headers"`
}

func ports(variable, fallback string) []string {
	value := os.Getenv(variable)
	if value == "" {
		value = fallback
	}
	var out []string
	for _, port := range strings.Split(value, ",") {
		if port = strings.TrimSpace(port); port != "" {
			out = append(out, port)
		}
	}
	return out
}

func handler(name, port string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintln(w, "ok")
			return
		}
		a := answer{
			Name:          name,
			Pod:           os.Getenv("POD_NAME"),
			Namespace:     os.Getenv("POD_NAMESPACE"),
			Port:          port,
			Method:        r.Method,
			Path:          r.URL.EscapedPath(),
			Query:         r.URL.RawQuery,
			RemoteAddress: r.RemoteAddr,
			Headers:       map[string][]string{},
		}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			a.ClientSubject = r.TLS.PeerCertificates[0].Subject.String()
		}
		keys := make([]string, 0, len(r.Header))
		for key := range r.Header {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			a.Headers[key] = r.Header[key]
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo-Name", name)
		_ = json.NewEncoder(w).Encode(a)
	})
}

func tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(os.Getenv("ECHO_TLS_CERT"), os.Getenv("ECHO_TLS_KEY"))
	if err != nil {
		return nil, fmt.Errorf("loading ECHO_TLS_CERT and ECHO_TLS_KEY: %w", err)
	}
	config := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile := os.Getenv("ECHO_TLS_CLIENT_CA"); caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading ECHO_TLS_CLIENT_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ECHO_TLS_CLIENT_CA holds no certificate")
		}
		config.ClientCAs = pool
		config.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return config, nil
}

func connect(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: agency-echo connect HOST:PORT [TIMEOUT]")
		return 2
	}
	timeout := 3 * time.Second
	if len(args) > 1 {
		parsed, err := time.ParseDuration(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		timeout = parsed
	}
	conn, err := net.DialTimeout("tcp", args[0], timeout)
	if err != nil {
		fmt.Printf("refused %s: %v\n", args[0], err)
		return 1
	}
	_ = conn.Close()
	fmt.Printf("connected %s\n", args[0])
	return 0
}

func lookup(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: agency-echo lookup NAME")
		return 2
	}
	addresses, err := net.LookupHost(args[0])
	if err != nil {
		fmt.Printf("unresolved %s: %v\n", args[0], err)
		return 1
	}
	fmt.Printf("resolved %s: %s\n", args[0], strings.Join(addresses, " "))
	return 0
}

func get(args []string) int {
	var url, certFile, keyFile, caFile, connectTo string
	timeout := 10 * time.Second
	for i := 0; i < len(args); i++ {
		value := func() string {
			i++
			if i < len(args) {
				return args[i]
			}
			return ""
		}
		switch args[i] {
		case "--cert":
			certFile = value()
		case "--key":
			keyFile = value()
		case "--ca":
			caFile = value()
		case "--connect":
			connectTo = value()
		case "--timeout":
			parsed, err := time.ParseDuration(value())
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			timeout = parsed
		default:
			url = args[i]
		}
	}
	if url == "" {
		fmt.Fprintln(os.Stderr, "usage: agency-echo get URL [--cert F --key F --ca F] [--timeout D]")
		return 2
	}
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		config.RootCAs = x509.NewCertPool()
		config.RootCAs.AppendCertsFromPEM(pem)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		config.Certificates = []tls.Certificate{cert}
	}
	transport := &http.Transport{TLSClientConfig: config}
	if connectTo != "" {
		dialer := &net.Dialer{Timeout: timeout}
		transport.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, connectTo)
		}
	}
	client := &http.Client{Timeout: timeout, Transport: transport}
	response, err := client.Get(url)
	if err != nil {
		fmt.Printf("failed %s: %v\n", url, err)
		return 1
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(response.Body, 1<<20))
	fmt.Printf("%s %s\n%s", response.Proto, response.Status, body)
	return 0
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "--version":
			fmt.Println("agency-echo " + version)
			return
		case "connect":
			os.Exit(connect(os.Args[2:]))
		case "lookup":
			os.Exit(lookup(os.Args[2:]))
		case "get":
			os.Exit(get(os.Args[2:]))
		}
	}
	name := os.Getenv("ECHO_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	errors := make(chan error, 1)
	serve := func(port string, config *tls.Config) {
		listener, err := net.Listen("tcp", ":"+port)
		if err != nil {
			errors <- err
			return
		}
		server := &http.Server{Handler: handler(name, port), ReadHeaderTimeout: 10 * time.Second, TLSConfig: config}
		if config != nil {
			errors <- server.ServeTLS(listener, "", "")
		} else {
			errors <- server.Serve(listener)
		}
	}
	for _, port := range ports("ECHO_PORTS", "8080") {
		go serve(port, nil)
	}
	if tlsPorts := ports("ECHO_TLS_PORTS", ""); len(tlsPorts) > 0 {
		config, err := tlsConfig()
		if err != nil {
			log.Fatal(err)
		}
		for _, port := range tlsPorts {
			go serve(port, config)
		}
	}
	log.Printf("agency-echo %s listening on %v (TLS %v)", name, ports("ECHO_PORTS", "8080"), ports("ECHO_TLS_PORTS", ""))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errors:
		log.Fatal(err)
	case <-stop:
	}
}
