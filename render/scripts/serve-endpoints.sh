#!/bin/bash
set -euo pipefail
## Points each elastic service's node port at SkyServe's load balancer, on the K3s server
## (lmrun-serve-endpoints.timer). The elastic services are the Services of NAMESPACE labelled SELECTOR (Pulumi
## creates them), so adding one changes no user data. For each: reads the String parameter `lmrun sky bind`
## writes (IP:PORT), checks it (serve_endpoints.py: an IPv4 address inside the main VPC, a load-balancer port)
## and applies the Service's EndpointSlice with it. No parameter: the slice has no endpoint (clients are
## refused, never sent to a wrong backend). A value that fails the check, or a parameter that cannot be read:
## logged, the slice left as it is, and the run fails (after the other services) so `systemctl status` shows it.
## Header: KUBECTL (argv of kubectl as root on the server), NAMESPACE, SELECTOR (the elastic Services' label),
## PREFIX (their names' prefix), REGION (of the parameters), PARAMETER_PATTERN ({service}: the service's name),
## VPC_CIDR (the main VPC), LB_PORTS (LOW-HIGH), SLICE (the EndpointSlice without endpoints, as JSON).
python="${PYTHON:-python3}"
helpers="${LMRUN_SCRIPT_DIR:-/usr/local/lib/lmrun}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"${KUBECTL[@]}" get services --namespace "${NAMESPACE:?}" --selector "${SELECTOR:?}" \
    --output 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}' >"$work/services"
printf '%s' "${SLICE:?}" >"$work/template.json"
failed=0
while read -r name; do
    service="${name#"${PREFIX:?}"}"
    if [ "$service" = "$name" ] || ! [[ "$service" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]]; then
        echo "lmrun: Service $name is not an elastic service's (${PREFIX}<service>); left alone" >&2
        failed=1
        continue
    fi
    parameter="${PARAMETER_PATTERN//\{service\}/$service}"
    if value="$(aws ssm get-parameter --region "${REGION:?}" --name "$parameter" \
        --query Parameter.Value --output text 2>"$work/error")"; then
        :
    elif grep -q ParameterNotFound "$work/error"; then
        value=""
    else
        echo "lmrun: $service: cannot read $parameter, its EndpointSlice is left as it is: $(cat "$work/error")" >&2
        failed=1
        continue
    fi
    if ! "$python" "$helpers/serve_endpoints.py" "$name" "$value" "${VPC_CIDR:?}" "${LB_PORTS:?}" \
        <"$work/template.json" >"$work/slice.json" 2>"$work/error"; then
        echo "lmrun: $service: $parameter: $(cat "$work/error"); its EndpointSlice is left as it is" >&2
        failed=1
        continue
    fi
    "${KUBECTL[@]}" apply -f "$work/slice.json" || failed=1
done <"$work/services"
exit "$failed"
