{{/* Chart name. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: the release name, plus the chart name unless it is in it. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of the controller's Deployment/DaemonSet, Service and ConfigMap. */}}
{{- define "sluice.controller.fullname" -}}
{{- printf "%s-%s" (include "sluice.fullname" .) .Values.controller.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.electionID" -}}
{{- default (printf "%s-leader" (include "sluice.fullname" .)) .Values.controller.electionID -}}
{{- end -}}

{{- define "sluice.sessionCookieSecret" -}}
{{- default (printf "%s-session-cookie" (include "sluice.fullname" .)) .Values.controller.sessionCookieKeySecret -}}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ include "sluice.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of the controller Pods and of what selects them. */}}
{{- define "sluice.controller.selectorLabels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "sluice.image" -}}
{{- $img := .Values.controller.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion ($img.tag | toString)) -}}
{{- end -}}
{{- end -}}

{{/*
Seconds in an nginx time value as sluice reads `worker-shutdown-timeout`: a bare number
is seconds; units ms, s, m, h, d may be combined ("1m30s"). Milliseconds round up.
*/}}
{{- define "sluice.nginxTimeSeconds" -}}
{{- $v := toString . | trim -}}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h|d)?\\s*)+$" $v) -}}
{{- fail (printf "controller.config.worker-shutdown-timeout: %q is not an nginx time (like 240s, 4m, 1m30s)" $v) -}}
{{- end -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d)?" $v -1 -}}
{{- $digits := regexFind "^[0-9]+" . -}}
{{- $n := atoi $digits -}}
{{- $unit := trimPrefix $digits . -}}
{{- if eq $unit "ms" -}}{{- $total = add $total (div (add $n 999) 1000) -}}
{{- else if eq $unit "m" -}}{{- $total = add $total (mul $n 60) -}}
{{- else if eq $unit "h" -}}{{- $total = add $total (mul $n 3600) -}}
{{- else if eq $unit "d" -}}{{- $total = add $total (mul $n 86400) -}}
{{- else -}}{{- $total = add $total $n -}}
{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: long enough for sluice's drain (shutdown grace period,
then worker-shutdown-timeout for requests in flight) plus 10 s to exit.
*/}}
{{- define "sluice.terminationGracePeriodSeconds" -}}
{{- $c := .Values.controller -}}
{{- $grace := 5 -}}
{{- if ne (toString $c.shutdownGracePeriod) "" -}}
{{- $grace = include "sluice.nginxTimeSeconds" $c.shutdownGracePeriod | atoi -}}
{{- end -}}
{{- $wst := include "sluice.nginxTimeSeconds" (index $c.config "worker-shutdown-timeout" | default "240s") | atoi -}}
{{- $needed := add $grace $wst 10 -}}
{{- if ne (toString $c.terminationGracePeriodSeconds) "" -}}
{{- $set := int64 $c.terminationGracePeriodSeconds -}}
{{- if lt $set (int64 (sub $needed 10)) -}}
{{- fail (printf "controller.terminationGracePeriodSeconds=%d is shorter than sluice's drain: shutdownGracePeriod (%ds) + worker-shutdown-timeout (%ds)" $set $grace $wst) -}}
{{- end -}}
{{- $set -}}
{{- else -}}
{{- $needed -}}
{{- end -}}
{{- end -}}

{{/* A ConfigMap value as a string (YAML numbers arrive as floats: 240 stays "240"). */}}
{{- define "sluice.configValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . | toString -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* The controller container's arguments. */}}
{{- define "sluice.args" -}}
{{- $c := .Values.controller -}}
- --http-listen={{ $c.bindAddress }}:{{ $c.containerPort.http }}
- --https-listen={{ $c.bindAddress }}:{{ $c.containerPort.https }}
- --admin-listen={{ $c.bindAddress }}:{{ $c.adminPort }}
- --controller-class={{ $c.ingressClassResource.controllerValue }}
- --ingress-class={{ $c.ingressClass }}
{{- if $c.watchIngressWithoutClass }}
- --watch-ingress-without-class
{{- end }}
- --configmap={{ .Release.Namespace }}/{{ include "sluice.controller.fullname" . }}
- --election-id={{ include "sluice.electionID" . }}
{{- if $c.publishService.enabled }}
- --publish-service={{ default (printf "%s/%s" .Release.Namespace (include "sluice.controller.fullname" .)) $c.publishService.pathOverride }}
{{- end }}
{{- if ne (toString $c.shutdownGracePeriod) "" }}
- --shutdown-grace-period={{ include "sluice.nginxTimeSeconds" $c.shutdownGracePeriod }}
{{- end }}
{{- range $key, $value := $c.extraArgs }}
{{- if kindIs "bool" $value }}
{{- if $value }}
- --{{ $key }}
{{- end }}
{{- else if kindIs "slice" $value }}
{{- range $value }}
- {{ printf "--%s=%s" $key (include "sluice.configValue" .) | quote }}
{{- end }}
{{- else if not (kindIs "invalid" $value) }}
- {{ printf "--%s=%s" $key (include "sluice.configValue" $value) | quote }}
{{- end }}
{{- end }}
{{- end -}}
