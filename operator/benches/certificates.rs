//! `cargo bench -p govpaas-operator --bench certificates` (or `cargo xtask bench certificates`).
//!
//! Issues the national-scale set, 4,000 tenant intermediate CAs and 12,000 leaves (a third each
//! TLS server, LGSP client and document-signing), single-threaded, and measures in the same run the
//! raw rate of the primitives every issuance pays for, with ring (which rcgen signs with): ECDSA
//! P-256 signatures over a message the size of a real leaf's to-be-signed part, and P-256 key
//! generation. A sample of the issued leaves is verified with rustls-webpki, outside the timing.
//!
//! Prints a human summary and one `BENCH-RESULT {json}` line that `xtask::bench` records.

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use govpaas_pki::verify::{chain_from_pem, verify_client_chain, verify_server_chain, verify_signing_chain};
use govpaas_pki::{
    CertificateAuthority, ClientCertificateRequest, IssuancePolicy, IssuedCertificate, PlatformCaRequest,
    ServerCertificateRequest, SigningCertificateRequest, TenantCaRequest, TrustAnchors, generate_platform_ca,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use time::OffsetDateTime;

/// The national scale: tenants and services of 34 provinces.
const TENANTS: usize = 4_000;
const LEAVES: usize = 12_000;
const RAW_OPERATIONS: usize = 16_000;
/// Under `cargo test --benches` (no `--bench` argument) the same code runs at 1/100 of the size,
/// as a quick check that it works, and prints no BENCH-RESULT.
const SMOKE_DIVISOR: usize = 100;
const BASE: &str = "bench.gov.vn";
/// Every how many leaves one is verified with webpki after the timed run.
const VERIFY_EVERY: usize = 25;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full { 1 } else { SMOKE_DIVISOR };
    let (tenant_count, leaf_count, raw_count) = (TENANTS / scale, LEAVES / scale, RAW_OPERATIONS / scale);
    let policy = IssuancePolicy::default();
    let now = OffsetDateTime::now_utc();
    let platform =
        generate_platform_ca(&PlatformCaRequest::new(BASE, "govpaas benchmark"), &policy, now).expect("platform CA");

    // Warm up caches and the allocator on a small set first.
    for i in 0..50 {
        let tenant = platform.issue_tenant_ca(&tenant_request(i), &policy, now).expect("warm-up tenant");
        black_box(issue_leaf(&tenant, i, &policy, now));
    }

    let started = Instant::now();
    let tenants: Vec<CertificateAuthority> = (0..tenant_count)
        .map(|i| platform.issue_tenant_ca(&tenant_request(i), &policy, now).expect("tenant CA"))
        .collect();
    let tenant_time = started.elapsed();

    let started = Instant::now();
    let leaves: Vec<IssuedCertificate> =
        (0..leaf_count).map(|i| issue_leaf(&tenants[i % tenant_count], i, &policy, now)).collect();
    let leaf_time = started.elapsed();

    // The raw primitives, in the same process, on the same data sizes.
    let tbs_bytes = leaf_tbs_len(&leaves[0]);
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("key");
    let message = vec![0x5a_u8; tbs_bytes];
    let started = Instant::now();
    for _ in 0..raw_count {
        black_box(key.sign(&rng, black_box(&message)).expect("sign"));
    }
    let sign_time = started.elapsed();
    let started = Instant::now();
    for _ in 0..raw_count {
        black_box(EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("keygen"));
    }
    let keygen_time = started.elapsed();
    // rcgen loads every key it generates back from PKCS#8 (ring checks the pair: another scalar
    // multiplication), so that is a primitive of each issuance too.
    let started = Instant::now();
    for _ in 0..raw_count {
        black_box(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, black_box(pkcs8.as_ref()), &rng).expect("load"),
        );
    }
    let load_time = started.elapsed();

    let verified = verify_sample(&platform, &leaves, tenant_count, now);
    let (census_time, counted) = time_census(&platform, &tenants, &leaves, &policy, now);

    let rate = |n: usize, t: StdDuration| n as f64 / t.as_secs_f64();
    let tenant_rate = rate(tenant_count, tenant_time);
    let leaf_rate = rate(leaf_count, leaf_time);
    let overall_rate = rate(tenant_count + leaf_count, tenant_time + leaf_time);
    let sign_rate = rate(raw_count, sign_time);
    let keygen_rate = rate(raw_count, keygen_time);
    let load_rate = rate(raw_count, load_time);
    // An issuance is one key generation, one key load and one signature: the best rcgen could
    // reach on ring.
    let primitive_bound = 1.0 / (1.0 / sign_rate + 1.0 / keygen_rate + 1.0 / load_rate);

    println!("govpaas certificate issuance, single thread, ECDSA P-256 everywhere");
    println!("  tenant CAs     {tenant_count:>6} in {:>7.3} s  = {tenant_rate:>8.0} /s", tenant_time.as_secs_f64());
    println!("  leaves         {leaf_count:>6} in {:>7.3} s  = {leaf_rate:>8.0} /s", leaf_time.as_secs_f64());
    println!(
        "  all            {:>6} in {:>7.3} s  = {overall_rate:>8.0} /s",
        tenant_count + leaf_count,
        (tenant_time + leaf_time).as_secs_f64()
    );
    println!("  ring P-256 sign ({tbs_bytes} B)              = {sign_rate:>8.0} /s");
    println!("  ring P-256 key generation                = {keygen_rate:>8.0} /s");
    println!("  ring P-256 key load from PKCS#8          = {load_rate:>8.0} /s");
    println!("  keygen+load+sign bound                   = {primitive_bound:>8.0} /s");
    println!(
        "  issuance / raw sign = {:.3}, issuance / keygen+load+sign bound = {:.3}",
        overall_rate / sign_rate,
        overall_rate / primitive_bound
    );
    println!("  verified with rustls-webpki: {verified} sampled leaves");
    println!(
        "  rotation census of {counted} Secrets and {tenant_count} bundles in {:>7.3} s = {:>8.0} certificates/s",
        census_time.as_secs_f64(),
        rate(counted, census_time)
    );

    let result = serde_json::json!({
        "tenants": tenant_count,
        "leaves": leaf_count,
        "tenant_seconds": tenant_time.as_secs_f64(),
        "leaf_seconds": leaf_time.as_secs_f64(),
        "tenant_per_second": tenant_rate,
        "leaf_per_second": leaf_rate,
        "certificates_per_second": overall_rate,
        "tbs_bytes": tbs_bytes,
        "raw_operations": raw_count,
        "raw_sign_per_second": sign_rate,
        "raw_keygen_per_second": keygen_rate,
        "raw_key_load_per_second": load_rate,
        "primitive_bound_per_second": primitive_bound,
        "issuance_to_sign_ratio": overall_rate / sign_rate,
        "issuance_to_primitive_bound_ratio": overall_rate / primitive_bound,
        "verified_samples": verified,
        "census_certificates": counted,
        "census_bundles": tenant_count,
        "census_seconds": census_time.as_secs_f64(),
        "census_per_second": rate(counted, census_time),
    });
    if full {
        println!("BENCH-RESULT {result}");
    } else {
        println!("(smoke run at 1/{SMOKE_DIVISOR} of the size; `cargo bench` runs the real one)");
    }
}

fn tenant_request(i: usize) -> TenantCaRequest {
    TenantCaRequest {
        base_domain: BASE.to_owned(),
        agency_code: format!("H49.{i}"),
        display_name: format!("Xã số {i}"),
        domain: format!("t{i}.{BASE}"),
    }
}

/// Leaf `i` of the mix: server, client, signing in turn.
fn issue_leaf(
    tenant: &CertificateAuthority,
    i: usize,
    policy: &IssuancePolicy,
    now: OffsetDateTime,
) -> IssuedCertificate {
    let domain = &tenant.permitted_domains()[0];
    let identity = || tenant.agency().expect("tenant CA").workload("dss", &format!("svc-{i}")).expect("identity");
    match i % 3 {
        0 => tenant.issue_server_certificate(
            &ServerCertificateRequest::new([format!("portal-{i}.{domain}"), domain.clone()]),
            policy,
            now,
        ),
        1 => tenant.issue_client_certificate(&ClientCertificateRequest { identity: identity() }, policy, now),
        _ => tenant.issue_signing_certificate(
            &SigningCertificateRequest { identity: identity(), signer_name: String::new() },
            policy,
            now,
        ),
    }
    .expect("leaf")
}

fn leaf_tbs_len(leaf: &IssuedCertificate) -> usize {
    let chain = chain_from_pem("tls.crt", leaf.chain_pem().as_bytes()).expect("chain");
    let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).expect("leaf");
    cert.tbs_certificate.as_ref().len()
}

fn verify_sample(
    platform: &CertificateAuthority,
    leaves: &[IssuedCertificate],
    tenant_count: usize,
    now: OffsetDateTime,
) -> usize {
    let trust = TrustAnchors::from_pem(platform.certificate_pem().as_bytes()).expect("trust");
    let mut verified = 0;
    for (i, leaf) in leaves.iter().enumerate().step_by(VERIFY_EVERY) {
        let chain = chain_from_pem("tls.crt", leaf.chain_pem().as_bytes()).expect("chain");
        let tenant = format!("t{}.{BASE}", i % tenant_count);
        match i % 3 {
            0 => verify_server_chain(&chain, &trust, &format!("portal-{i}.{tenant}"), now).map(|_| ()),
            1 => verify_client_chain(&chain, &trust, now).map(|_| ()),
            _ => verify_signing_chain(&chain, &trust, now),
        }
        .unwrap_or_else(|e| panic!("leaf {i} does not verify: {e}"));
        verified += 1;
    }
    verified
}

/// Times one count of a platform CA rotation, as the trust controller makes it on every poll while
/// re-issuing: every tenant CA and leaf Secret parsed and checked against the retiring and the new
/// CA, every trust bundle compared. Returns the time and how many certificates were counted.
fn time_census(
    platform: &CertificateAuthority,
    tenants: &[CertificateAuthority],
    leaves: &[IssuedCertificate],
    policy: &IssuancePolicy,
    now: OffsetDateTime,
) -> (StdDuration, usize) {
    use std::collections::BTreeMap;

    use govpaas_pki::{BundleCa, TrustRotation};
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};

    let next = generate_platform_ca(&PlatformCaRequest::new(BASE, "govpaas benchmark"), policy, now).expect("new CA");
    let rotation = TrustRotation::new(BundleCa::of(platform))
        .begin(BundleCa::of(&next), now)
        .and_then(|r| r.bundle_distributed(now, time::Duration::ZERO))
        .expect("a rotation in its Reissuing phase");
    let bundle = rotation.bundle_pem();
    let secret = |crt: &str| Secret {
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(crt.as_bytes().to_vec())),
            ("ca.crt".to_owned(), ByteString(bundle.as_bytes().to_vec())),
        ])),
        ..Default::default()
    };
    let tenant_cas: Vec<Secret> = tenants.iter().map(|ca| secret(ca.certificate_pem())).collect();
    let leaf_secrets: Vec<Secret> = leaves.iter().map(|leaf| secret(leaf.chain_pem())).collect();
    let bundles: Vec<ConfigMap> = tenants
        .iter()
        .map(|_| ConfigMap {
            data: Some(BTreeMap::from([("ca.crt".to_owned(), bundle.clone())])),
            ..Default::default()
        })
        .collect();
    let started = Instant::now();
    let census = black_box(govpaas_operator::trust::census::census(&rotation, &bundles, &tenant_cas, &leaf_secrets));
    let elapsed = started.elapsed();
    let counted = tenant_cas.len() + leaf_secrets.len();
    assert_eq!(census.progress.on_old, counted, "every certificate still chains to the retiring CA");
    assert_eq!(census.bundles_pending, 0);
    (elapsed, counted)
}
