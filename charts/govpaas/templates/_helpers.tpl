{{/* Labels on every object of the chart. */}}
{{- define "govpaas.labels" -}}
app.kubernetes.io/name: govpaas
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: govpaas
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "govpaas.operatorServiceAccount" -}}
{{ .Values.operator.serviceAccount.name }}
{{- end }}

{{/* The operator's user name as the API server sees it: what the tenant-objects policy spares. */}}
{{- define "govpaas.operatorUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "govpaas.operatorServiceAccount" . }}
{{- end }}

{{/* Selects the operator's Pods. */}}
{{- define "govpaas.operatorSelector" -}}
app.kubernetes.io/name: govpaas
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of the LGSP gateway's objects and Pods: its name is what providers' NetworkPolicies admit
(govpaas_crds::lgsp::GATEWAY_POD_LABEL). */}}
{{- define "govpaas.gatewayLabels" -}}
app.kubernetes.io/name: govpaas-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: lgsp-gateway
app.kubernetes.io/part-of: govpaas
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selects the LGSP gateway's Pods. */}}
{{- define "govpaas.gatewaySelector" -}}
app.kubernetes.io/name: govpaas-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
