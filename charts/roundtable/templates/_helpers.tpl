{{/*
Names. The release name is the prefix of every object (cut to 40 characters so that suffixes
such as "-operator-metrics" still fit a 63-character DNS label).
*/}}
{{- define "roundtable.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "roundtable.operator" -}}{{ include "roundtable.fullname" . }}-operator{{- end -}}
{{- define "roundtable.api" -}}{{ include "roundtable.fullname" . }}-api{{- end -}}

{{/* Cluster-scoped objects are shared by every namespace: their names carry the release
namespace so two releases of the same name never collide. */}}
{{- define "roundtable.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "roundtable.fullname" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object but the selector labels (so no key appears twice). */}}
{{- define "roundtable.releaseLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: roundtable
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels of objects that belong to no component (Secrets, SFU policies). */}}
{{- define "roundtable.labels" -}}
{{ include "roundtable.releaseLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component ("operator", "api"). */}}
{{- define "roundtable.selector" -}}
app.kubernetes.io/name: roundtable
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "roundtable.componentLabels" -}}
{{ include "roundtable.releaseLabels" .root }}
{{ include "roundtable.selector" . }}
{{- end -}}

{{- define "roundtable.image" -}}
{{- $image := index .root.Values.image .name -}}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/*
Namespaces where rooms run, each once: the release namespace (unless the operator watches
another one only), watchNamespace and eventNamespaces.
*/}}
{{- define "roundtable.roomNamespaces" -}}
{{- $all := list -}}
{{- if or (not .Values.watchNamespace) (eq .Values.watchNamespace .Release.Namespace) -}}
{{- $all = append $all .Release.Namespace -}}
{{- end -}}
{{- if .Values.watchNamespace -}}
{{- $all = append $all .Values.watchNamespace -}}
{{- end -}}
{{- range .Values.eventNamespaces -}}
{{- $all = append $all . -}}
{{- end -}}
{{- $all | uniq | toJson -}}
{{- end -}}

{{/* The port range "first-last" of SFU hostPorts, checked. */}}
{{- define "roundtable.hostPorts" -}}
{{- $ports := .Values.media.hostPorts -}}
{{- if lt (int $ports.last) (int $ports.first) -}}
{{- fail (printf "media.hostPorts: last (%v) must not be below first (%v)" $ports.last $ports.first) -}}
{{- end -}}
{{- printf "%v-%v" (int $ports.first) (int $ports.last) -}}
{{- end -}}

{{/* Pod-level settings shared by the operator and the control plane. */}}
{{- define "roundtable.podCommon" -}}
{{- with .root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* Namespaces that hold the join-token Secret: the control plane's (the release namespace)
and every namespace where rooms run. */}}
{{- define "roundtable.tokenNamespaces" -}}
{{- prepend (include "roundtable.roomNamespaces" . | fromJsonArray) .Release.Namespace | uniq | toJson -}}
{{- end -}}

{{/* "address:port" for a listen flag; IPv6 literals get brackets. */}}
{{- define "roundtable.listen" -}}
{{- if contains ":" .address -}}
{{- printf "[%s]:%v" .address .port -}}
{{- else -}}
{{- printf "%s:%v" .address .port -}}
{{- end -}}
{{- end -}}

{{/*
The join-token key: joinToken.key, else the key already in the release namespace's Secret (so
upgrades keep it), else 64 random characters. Resolved once per render and remembered, so
every copy of the Secret and the control plane's checksum agree.
*/}}
{{- define "roundtable.joinTokenKey" -}}
{{- if not (hasKey .Values.joinToken "resolvedKey") -}}
{{- $key := .Values.joinToken.key -}}
{{- if not $key -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace "roundtable-join-token" -}}
{{- if and $existing $existing.data (hasKey $existing.data "key") -}}
{{- $key = index $existing.data "key" | b64dec -}}
{{- else -}}
{{- $key = randAlphaNum 64 -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values.joinToken "resolvedKey" $key -}}
{{- end -}}
{{- .Values.joinToken.resolvedKey -}}
{{- end -}}

{{/* "true" when the control plane keeps its state in PostgreSQL (several replicas). */}}
{{- define "roundtable.apiPostgres" -}}
{{- if or .Values.api.database.url .Values.api.database.existingSecret }}true{{ end -}}
{{- end -}}

{{/* Control-plane replicas: api.replicas with PostgreSQL, 1 with SQLite (one writer). */}}
{{- define "roundtable.apiReplicas" -}}
{{- if include "roundtable.apiPostgres" . }}{{ .Values.api.replicas }}{{ else }}1{{ end -}}
{{- end -}}

{{/* The Secret holding the TURN REST shared secret. */}}
{{- define "roundtable.turnSecretName" -}}
{{- default (printf "%s-turn" .Release.Name) .Values.turn.existingSecret -}}
{{- end }}

{{/* Where hosts' dashboard rooms are created. */}}
{{- define "roundtable.roomsNamespace" -}}
{{- .Values.api.accounts.roomsNamespace | default .Values.watchNamespace | default .Release.Namespace -}}
{{- end }}
