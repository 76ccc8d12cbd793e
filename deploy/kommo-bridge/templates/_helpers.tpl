{{/* Names, labels and the pieces every workload of the chart shares. */}}

{{- define "kb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kb.fullname" -}}
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

{{/* The name of one component's resources: <fullname>-<component>. Args: (dict "root" $ "name" …). */}}
{{- define "kb.componentName" -}}
{{- printf "%s-%s" (include "kb.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kb.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kommo-bridge
{{- end -}}

{{/* Labels of one component. Args: (dict "root" $ "name" …). */}}
{{- define "kb.componentLabels" -}}
{{ include "kb.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "kb.componentSelectorLabels" -}}
{{ include "kb.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "kb.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "kb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kb.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kb.secretName" -}}
{{- default (include "kb.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The NATS client URL: the subchart's Service (named as the NATS chart names it), or externalNats. */}}
{{- define "kb.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- $natsName := "" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- $natsName = .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "nats" .Values.nats.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- $natsName = .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $natsName = printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- printf "nats://%s:4222" $natsName -}}
{{- else -}}
{{- required "externalNats.url is required when nats.enabled=false" .Values.externalNats.url -}}
{{- end -}}
{{- end -}}

{{/* The gateway's in-cluster base URL (sandbox emulators and the test hook call it). */}}
{{- define "kb.gatewayUrl" -}}
{{- printf "http://%s:%d" (include "kb.componentName" (dict "root" . "name" "gateway")) (int .Values.gatewayService.port) -}}
{{- end -}}

{{- define "kb.emulatorsName" -}}
{{- include "kb.componentName" (dict "root" . "name" "emulators") -}}
{{- end -}}

{{/* Emulator ports (sandbox): amojo, Telegram, the Kommo account side (OAuth, REST). */}}
{{- define "kb.emulatorPorts" -}}
{"kommo": 9001, "telegram": 9002, "accounts": 9003}
{{- end -}}

{{/*
gRPC addresses: a gRPC service binds 0.0.0.0:<port> from its own BRIDGE_<NAME>_GRPC_ADDR; every other
pod calls <fullname>-<name>:<port> through the same variable. Args: (dict "root" $ "self" <key or "">).
*/}}
{{- define "kb.grpcEnv" -}}
{{- $root := .root -}}
{{- $self := .self -}}
{{- range $name, $svc := $root.Values.services }}
{{- if and $svc.enabled (eq $svc.kind "grpc") }}
- name: {{ printf "BRIDGE_%s_GRPC_ADDR" ($name | upper | replace "-" "_") }}
  {{- if eq $name $self }}
  value: {{ printf "0.0.0.0:%d" (int $svc.port) | quote }}
  {{- else }}
  value: {{ printf "%s:%d" (include "kb.componentName" (dict "root" $root "name" $name)) (int $svc.port) | quote }}
  {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Secret keys a missing value of which is tolerated (the pod still starts). */}}
{{- define "kb.optionalSecretKeys" -}}
["BRIDGE_KOMMO_CLIENT_SECRET"]
{{- end -}}

{{/* env entries for secret keys. Args: (dict "root" $ "keys" (list …)). */}}
{{- define "kb.secretEnv" -}}
{{- $optional := include "kb.optionalSecretKeys" .root | fromJsonArray -}}
{{- range .keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ include "kb.secretName" $.root }}
      key: {{ . }}
      {{- if has . $optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end -}}

{{/* Trace settings (standard OTEL_* variables). Args: (dict "root" $ "name" <service key>). */}}
{{- define "kb.tracingEnv" -}}
{{- $tracing := .root.Values.tracing -}}
- name: OTEL_SERVICE_NAME
  value: {{ printf "%s%s" $tracing.serviceNamePrefix .name | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.namespace=%s,service.version=%s" .root.Release.Namespace .root.Chart.AppVersion | quote }}
{{- if $tracing.enabled }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ required "tracing.otlpEndpoint is required when tracing.enabled" $tracing.otlpEndpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_TRACES_SAMPLER
  value: {{ $tracing.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $tracing.samplerArg | quote }}
{{- else }}
- name: OTEL_SDK_DISABLED
  value: "true"
{{- end }}
{{- end -}}

{{- define "kb.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "kb.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* The writable /tmp every container gets (the root filesystem is read-only). */}}
{{- define "kb.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.pod.tmpSizeLimit }}
{{- end -}}

{{- define "kb.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Scheduling settings shared by every pod. */}}
{{- define "kb.scheduling" -}}
{{- with .Values.pod.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.pod.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.pod.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.pod.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
Fail early on combinations the schema cannot express. Included by the ConfigMap, so every render runs it.
*/}}
{{- define "kb.validate" -}}
{{- $secrets := .Values.secrets -}}
{{- if not $secrets.existingSecret -}}
{{- $_ := required "secrets.databaseUrl is required (or set secrets.existingSecret)" $secrets.databaseUrl -}}
{{- $_ := required "secrets.masterKeys is required (or set secrets.existingSecret); make one with `bridgectl keys generate k1`" $secrets.masterKeys -}}
{{- $_ := required "secrets.serviceToken is required (or set secrets.existingSecret)" $secrets.serviceToken -}}
{{- $_ := required "secrets.kommoChannelSecret is required (or set secrets.existingSecret)" $secrets.kommoChannelSecret -}}
{{- if .Values.sandbox.enabled -}}
{{- $_ := required "secrets.kommoClientSecret is required in sandbox mode (the emulated integration's secret)" $secrets.kommoClientSecret -}}
{{- end -}}
{{- end -}}
{{- if .Values.sandbox.enabled -}}
{{- $_ := required "sandbox.channelId is required when sandbox.enabled" .Values.sandbox.channelId -}}
{{- $_ := required "sandbox.clientId is required when sandbox.enabled" .Values.sandbox.clientId -}}
{{- else -}}
{{- $_ := required "config.kommo.channelId is required (the chat channel Kommo registered for you)" .Values.config.kommo.channelId -}}
{{- end -}}
{{- if .Values.nats.enabled -}}
{{- $cluster := .Values.nats.config.cluster -}}
{{- $nodes := ternary (int $cluster.replicas) 1 (and $cluster.enabled true) -}}
{{- if gt (int .Values.config.streamReplicas) $nodes -}}
{{- fail (printf "config.streamReplicas (%d) exceeds the NATS cluster size (%d)" (int .Values.config.streamReplicas) $nodes) -}}
{{- end -}}
{{- if not .Values.nats.config.jetstream.enabled -}}
{{- fail "nats.config.jetstream.enabled must be true: every stream of the bridge lives in JetStream" -}}
{{- end -}}
{{- end -}}
{{- range $name, $svc := .Values.services -}}
{{- if and $svc.enabled (ne $svc.kind "worker") (lt (int $svc.port) 1) -}}
{{- fail (printf "services.%s.port must be set: it is a %s service" $name $svc.kind) -}}
{{- end -}}
{{- end -}}
{{- end -}}
