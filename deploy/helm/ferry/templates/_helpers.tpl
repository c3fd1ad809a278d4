{{/* The release's base name: the release name when it holds "ferry". */}}
{{- define "ferry.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* ferry.selectorLabels: (dict "root" $ "name" "catalog") */}}
{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: ferry
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "ferry.labels" -}}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "ferry.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* ferry.address: (dict "root" $ "name" "capture"), the target others dial. */}}
{{/* A dns:/// target over a headless Service: every pod, balanced round robin. */}}
{{- define "ferry.address" -}}
dns:///{{ include "ferry.fullname" .root }}-{{ .name }}:{{ (index .root.Values .name).port }}
{{- end -}}

{{/* Processes that resolve task secrets (secret.Policy): the rest never read one. */}}
{{- define "ferry.resolvesSecrets" -}}
{{- if has . (list "catalog" "capture" "delivery") }}true{{ end -}}
{{- end -}}

{{/* ferry.taskSecrets: (dict "root" $ "name" "capture"), the task secrets this
process reads: the source's in catalog and capture, Kafka's in delivery. */}}
{{- define "ferry.taskSecrets" -}}
{{- $ts := .root.Values.taskSecrets -}}
{{- $out := dict -}}
{{- if and (has .name (list "catalog" "capture")) $ts.source.secretName -}}
{{- $_ := set $out "source" $ts.source -}}
{{- end -}}
{{- if and (eq .name "delivery") $ts.kafka.secretName -}}
{{- $_ := set $out "kafka" $ts.kafka -}}
{{- end -}}
{{- range $kind, $s := $out -}}
{{- $inside := false -}}
{{- range $ts.dirs -}}
{{- if or (eq (clean $s.mountPath) (clean .)) (hasPrefix (printf "%s/" (clean .)) (clean $s.mountPath)) -}}
{{- $inside = true -}}
{{- end -}}
{{- end -}}
{{- if not $inside -}}
{{- fail (printf "taskSecrets.%s.mountPath %s is outside taskSecrets.dirs %v: the services would refuse every spec naming its files" $kind $s.mountPath $ts.dirs) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* ferry.temporalArgs: the flags of taskapi.TemporalSettings, a JSON array. */}}
{{- define "ferry.temporalArgs" -}}
{{- $a := list (printf "-temporal=%s" .Values.temporal.address) (printf "-namespace=%s" .Values.temporal.namespace) -}}
{{- with .Values.temporal.taskQueue -}}
{{- $a = append $a (printf "-task-queue=%s" .) -}}
{{- end -}}
{{- with .Values.payloadKey.secretName -}}
{{- $a = append $a (printf "-payload-key-file=%s/%s" $.Values.payloadKey.mountPath $.Values.payloadKey.key) -}}
{{- end -}}
{{- toJson $a -}}
{{- end -}}

{{/* ferry.args: (dict "root" $ "name" "catalog"), the process's flags as a
JSON array (a YAML flow sequence, so no value needs escaping by hand). */}}
{{- define "ferry.args" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .name -}}
{{- $tls := $root.Values.tls -}}
{{- $a := list -}}
{{- if ne .name "worker" -}}
{{- $a = append $a (printf "-listen=0.0.0.0:%v" $v.port) -}}
{{- end -}}
{{- $a = append $a (printf "-metrics-addr=0.0.0.0:%v" $v.metricsPort) -}}
{{- $a = concat $a (list (printf "-tls-cert=%s/tls.crt" $tls.mountPath) (printf "-tls-key=%s/tls.key" $tls.mountPath) (printf "-tls-ca=%s/ca.crt" $tls.mountPath)) -}}
{{- with $tls.serverName -}}
{{- $a = append $a (printf "-tls-server-name=%s" .) -}}
{{- end -}}
{{- if include "ferry.resolvesSecrets" .name -}}
{{- $a = append $a (printf "-secret-dirs=%s" (join "," $root.Values.taskSecrets.dirs)) -}}
{{- end -}}
{{- if eq .name "capture" -}}
{{- $a = append $a (printf "-spool-dir=%s" $v.spool.mountPath) -}}
{{- end -}}
{{- if eq .name "delivery" -}}
{{- $a = append $a (printf "-capture=%s" (include "ferry.address" (dict "root" $root "name" "capture"))) -}}
{{- end -}}
{{- if has .name (list "control" "worker") -}}
{{- $a = append $a (printf "-catalog=%s" (include "ferry.address" (dict "root" $root "name" "catalog"))) -}}
{{- $a = concat $a (include "ferry.temporalArgs" $root | fromJsonArray) -}}
{{- end -}}
{{- if eq .name "control" -}}
{{- $a = append $a (printf "-token-file=%s/token" $v.tokenMountPath) -}}
{{- with $v.clientNames -}}
{{- $a = append $a (printf "-client-names=%s" .) -}}
{{- end -}}
{{- end -}}
{{- if eq .name "worker" -}}
{{- $a = append $a (printf "-capture=%s" (include "ferry.address" (dict "root" $root "name" "capture"))) -}}
{{- $a = append $a (printf "-delivery=%s" (include "ferry.address" (dict "root" $root "name" "delivery"))) -}}
{{- end -}}
{{- toJson (concat $a $v.extraArgs) -}}
{{- end -}}
