{{/* Names and labels. */}}
{{- define "fhirgate.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fhirgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fhirgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "fhirgate.selectorLabels" . }}
{{- end -}}

{{- define "fhirgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fhirgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "fhirgate.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "fhirgate.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "fhirgate.secretName" -}}
{{- default (include "fhirgate.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* Where the rate-limit counters live: the bundled Redis, the given URL, or nowhere. */}}
{{- define "fhirgate.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s-redis:6379/0" (include "fhirgate.fullname" .) -}}
{{- else -}}
{{- .Values.redis.url -}}
{{- end -}}
{{- end -}}

{{/*
The fhirgate.yaml every replica reads, built as a map and printed with toYaml so values
cannot break the YAML. Keys are those of docs/configuration.md; `extraConfig` is merged last.
*/}}
{{- define "fhirgate.config" -}}
{{- $v := .Values -}}
{{- $cfg := dict
  "listen" "0.0.0.0:8080"
  "public_base_url" (required "publicBaseUrl is required" $v.publicBaseUrl)
  "upstream" (dict "url" (required "upstream.url is required" $v.upstream.url) "connect_timeout" $v.upstream.connectTimeout "response_timeout" $v.upstream.responseTimeout)
  "limits" (dict "max_body_size" $v.limits.maxBodySize "max_concurrent_requests" $v.limits.maxConcurrentRequests)
  "shutdown" (dict "drain_time" $v.drainTime)
  "auth" (dict "mode" "required" "issuers" (required "issuers: at least one trusted issuer is required" $v.issuers))
  "metrics" (dict "enabled" true "admin_listen" "0.0.0.0:9090")
-}}
{{- with $v.smartConfiguration }}
{{- $_ := set $cfg "smart" (dict "configuration" .) }}
{{- end }}
{{- if $v.rateLimit.enabled }}
{{- $url := include "fhirgate.redisUrl" . }}
{{- $backend := "local" }}
{{- if $url }}
{{- $backend = dict "redis" (dict "url" $url "timeout" $v.rateLimit.redisTimeout) }}
{{- end }}
{{- $_ := set $cfg "rate_limit" (dict "rules" $v.rateLimit.rules "backend" $backend "fault_tolerant" $v.rateLimit.faultTolerant) }}
{{- end }}
{{- if $v.revocation.enabled }}
{{- $url := $v.revocation.redisUrl | default (include "fhirgate.redisUrl" .) }}
{{- $_ := set $cfg.auth "revocation" (dict "redis_url" (required "revocation.redisUrl (or a Redis) is required" $url)) }}
{{- end }}
{{- if eq $v.audit.sink "file" }}
{{- $audit := dict "sink" "file" "path" "/var/lib/fhirgate/audit" "durability" $v.audit.durability "on_failure" $v.audit.onFailure "rotate_size" $v.audit.rotateSize }}
{{- with $v.audit.forwardUrl }}
{{- $_ := set $audit "forward" (dict "url" .) }}
{{- end }}
{{- $_ := set $cfg "audit" $audit }}
{{- else if eq $v.audit.sink "stdout" }}
{{- $_ := set $cfg "audit" (dict "sink" "stdout" "on_failure" $v.audit.onFailure) }}
{{- else if ne $v.audit.sink "none" }}
{{- fail "audit.sink must be file, stdout or none" }}
{{- end }}
{{- $cfg = mustMergeOverwrite $cfg (deepCopy $v.extraConfig) }}
{{- toYaml $cfg }}
{{- end -}}
