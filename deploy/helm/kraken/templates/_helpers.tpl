{{/*
Names. Every object is "<fullname>-<component>"; with the release named
"kraken" the fullname is "kraken", so origin 0 is kraken-origin-0 behind the
headless Service kraken-origin. The fullname is cut to 40 characters so that
"-build-index-0" and the like still fit the 63 of a DNS label.
*/}}
{{- define "kraken.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects; call with (list $ "origin"). */}}
{{- define "kraken.name" -}}
{{- printf "%s-%s" (include "kraken.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* Labels that select one component's pods; call with (list $ "origin"). */}}
{{- define "kraken.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ default $.Chart.Name $.Values.nameOverride | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every label of one component's objects; call with (list $ "origin"). */}}
{{- define "kraken.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
{{ include "kraken.selectorLabels" . }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
{{- end -}}

{{- define "kraken.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "kraken.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kraken.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Addresses the components give each other. Origins are named one by one
through their headless Service, so a member list survives pod restarts
(pod IPs do not); everything else goes through its Service.
*/}}
{{- define "kraken.originMembers" -}}
{{- $origin := include "kraken.name" (list . "origin") -}}
{{- $members := list -}}
{{- range $i := until (int .Values.origin.replicas) -}}
{{- $members = append $members (printf "%s-%d.%s:%d" $origin $i $origin (int $.Values.origin.ports.http)) -}}
{{- end -}}
{{- toJson $members -}}
{{- end -}}

{{- define "kraken.buildIndexAddr" -}}
{{- printf "%s:%d" (include "kraken.name" (list . "build-index")) (int .Values.buildIndex.port) -}}
{{- end -}}

{{- define "kraken.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s:%d/0" (include "kraken.name" (list . "redis")) (int .Values.redis.port) -}}
{{- else -}}
{{- required "redis.url is needed when redis.enabled is false" .Values.redis.url -}}
{{- end -}}
{{- end -}}

{{/*
The [[backends]] routes of origins and build-index; call with
(list $ "blobs") or (list $ "tags"), the second naming the key prefix (S3)
or the subdirectory (fs) that keeps the two apart. Returns JSON, to be
read back with fromJsonArray.
*/}}
{{- define "kraken.backendRoutes" -}}
{{- $ := index . 0 -}}
{{- $what := index . 1 -}}
{{- $b := $.Values.backend -}}
{{- $route := dict "namespace" ".*" -}}
{{- if eq $b.kind "s3" -}}
{{- $_ := set $route "kind" "s3" -}}
{{- $_ := set $route "bucket" (required "backend.s3.bucket is needed" $b.s3.bucket) -}}
{{- $_ := set $route "region" (required "backend.s3.region is needed" $b.s3.region) -}}
{{- $_ := set $route "prefix" (index $b.s3.prefixes $what) -}}
{{- $_ := set $route "from_env" true -}}
{{- if $b.s3.endpoint -}}
{{- $_ := set $route "endpoint" $b.s3.endpoint -}}
{{- end -}}
{{- if $b.s3.allowHttp -}}
{{- $_ := set $route "allow_http" true -}}
{{- end -}}
{{- else if eq $b.kind "fs" -}}
{{- $_ := set $route "kind" "fs" -}}
{{- $_ := set $route "root" (printf "/var/lib/kraken/backend/%s" $what) -}}
{{- else -}}
{{- fail (printf "backend.kind must be s3 or fs, not %q" $b.kind) -}}
{{- end -}}
{{- $route = mergeOverwrite (deepCopy $b.routeOptions) $route -}}
{{- toJson (concat $b.extraRoutes (list $route)) -}}
{{- end -}}

{{/*
Environment that hands the S3 credentials to a process whose route has
from_env = true. Nothing when no Secret is named or made: then the
standard AWS sources apply (web identity, the instance role).
*/}}
{{- define "kraken.backendEnv" -}}
{{- $s3 := .Values.backend.s3 -}}
{{- $secret := $s3.credentials.existingSecret -}}
{{- if and (not $secret) $s3.credentials.accessKeyId -}}
{{- $secret = include "kraken.name" (list . "s3") -}}
{{- end -}}
{{- if and (eq .Values.backend.kind "s3") $secret -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $s3.credentials.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $s3.credentials.secretAccessKeyKey }}
{{- end -}}
{{- end -}}

{{/*
The fs backend's volume, shared by every origin and build-index; nothing
for s3.
*/}}
{{- define "kraken.backendVolume" -}}
{{- if eq .Values.backend.kind "fs" -}}
- name: backend
  persistentVolumeClaim:
    claimName: {{ default (include "kraken.name" (list . "backend")) .Values.backend.fs.existingClaim }}
{{- end -}}
{{- end -}}

{{- define "kraken.backendMount" -}}
{{- if eq .Values.backend.kind "fs" -}}
- name: backend
  mountPath: /var/lib/kraken/backend
{{- end -}}
{{- end -}}

{{/* Prometheus scrape annotations; call with (list $ port). */}}
{{- define "kraken.scrapeAnnotations" -}}
{{- $ := index . 0 -}}
{{- if $.Values.metrics.annotations -}}
prometheus.io/scrape: "true"
prometheus.io/path: /metrics
prometheus.io/port: {{ index . 1 | quote }}
{{- end -}}
{{- end -}}

{{/*
Environment of the config-rendering init step: the pod's name and IP (on
hostNetwork the IP is the node's).
*/}}
{{- define "kraken.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end -}}

{{/*
A component's TOML file from a map: scalars and arrays of scalars as
`key = <JSON>` (JSON strings, numbers and booleans are valid TOML), maps
as [tables], lists of maps as [[arrays of tables]]. Keys whose value is
null are left out, so a user can unset a default of the chart. Call with
(list (list "table" "path") map); the top level is (list (list) map).

Values are written through toJson rather than toToml because Helm reads
every number of values.yaml as a float, and toToml would write `10.0`
where the binaries want an integer.
*/}}
{{- define "kraken.toml" -}}
{{- $path := index . 0 -}}
{{- $table := index . 1 -}}
{{- range $key, $value := $table -}}
{{- if not (or (kindIs "invalid" $value) (kindIs "map" $value) (include "kraken.toml.isTableList" $value)) }}
{{ include "kraken.toml.key" $key }} = {{ toJson $value }}
{{- end -}}
{{- end -}}
{{- range $key, $value := $table -}}
{{- $sub := append $path (include "kraken.toml.key" $key) -}}
{{- if kindIs "map" $value }}

[{{ join "." $sub }}]
{{- include "kraken.toml" (list $sub $value) -}}
{{- else if include "kraken.toml.isTableList" $value -}}
{{- range $value }}

[[{{ join "." $sub }}]]
{{- include "kraken.toml" (list $sub .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kraken.toml.isTableList" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) (kindIs "map" (first .)) -}}true{{- end -}}
{{- end -}}

{{- define "kraken.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{/*
A component's whole config file: the shared [log] table, then the
component's `config` from values, then what the chart itself sets, each
over the one before. Call with (list $ componentConfig chartOwned).
*/}}
{{- define "kraken.configFile" -}}
{{- $ := index . 0 -}}
{{- $file := dict "log" (deepCopy $.Values.log) -}}
{{- $file = mergeOverwrite $file (deepCopy (index . 1)) (index . 2) -}}
# Rendered by the kraken Helm chart from its values; edit those, not this.
{{- include "kraken.toml" (list (list) $file) }}
{{ end -}}

{{/*
The init step of origins and agents (scripts.yaml): a ConfigMap is the
same for every pod, but an origin must know its own name among the
members and both must advertise a peer address other pods can dial,
which only the pod knows. The rendered file is checked with the binary's
--check, so a bad value stops the pod in its init container with the key
named.
*/}}
{{- define "kraken.script" -}}
#!/bin/sh
# render-config.sh TEMPLATE OUTPUT BINARY
# Writes TEMPLATE to OUTPUT with @POD_NAME@ and @POD_ADDR@ (POD_IP, in
# brackets when it is IPv6) filled in, then checks OUTPUT with BINARY.
set -eu
addr=$POD_IP
case $addr in
    *:*) addr="[$addr]" ;;
esac
sed -e "s/@POD_NAME@/$POD_NAME/g" -e "s/@POD_ADDR@/$addr/g" "$1" > "$2"
exec "$3" --config "$2" --check
{{- end -}}
