{{/* The chart name, or nameOverride. */}}
{{- define "routero-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of every object: fullnameOverride, else <release>-<chart> unless the release already holds it. */}}
{{- define "routero-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "routero-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "routero-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "routero-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "routero-operator.labels" -}}
helm.sh/chart: {{ include "routero-operator.chart" . }}
{{ include "routero-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: routero
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "routero-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "routero-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "routero-operator.leaseName" -}}
{{- default (include "routero-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The watched namespaces, comma-separated (empty: every namespace): watchNamespaces, plus the deprecated single
watchNamespace when it is set.
*/}}
{{- define "routero-operator.watchNamespaces" -}}
{{- $namespaces := .Values.watchNamespaces | default list }}
{{- with .Values.watchNamespace }}
{{- $namespaces = prepend $namespaces . }}
{{- end }}
{{- $namespaces | uniq | join "," }}
{{- end }}

{{- define "routero-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The rules the operator needs on the resources it watches. The same list serves the ClusterRole (all namespaces) and
the Role in each of watchNamespaces. Derived from the requests the operator really makes; tests/e2e/rbac.rs checks it.
*/}}
{{- define "routero-operator.rules" -}}
# The three kinds: watched (list, watch), read one by one (get), finalizers added and removed (patch).
- apiGroups: ["routero.ai"]
  resources: ["routeroteams", "routerokeys", "routeromembers"]
  verbs: ["get", "list", "watch", "patch"]
# Status is written with server-side apply.
- apiGroups: ["routero.ai"]
  resources: ["routeroteams/status", "routerokeys/status", "routeromembers/status"]
  verbs: ["patch"]
# The key Secrets: created, read, replaced, deleted; watched through a label selector (only its own).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# kube-runtime's event Recorder creates an Event, and patches it when the same event repeats.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
