#!/bin/bash
set -euo pipefail
## Points each elastic service's node port at SkyServe's load balancer, on the K3s server
## (lmrun-serve-endpoints.timer): reads the String parameter `lmrun sky bind` writes (IP:PORT), checks it
## (serve_endpoints.py: an IPv4 address inside the main VPC, a load-balancer port) and applies the service's
## EndpointSlice with it. No parameter: the slice has no endpoint (clients are refused, never sent to a wrong
## backend). A value that fails the check, or a parameter that cannot be read: logged, the slice left as it is,
## and the run fails (after the other services) so `systemctl status` shows it.
## Header: KUBECTL (argv of kubectl as root on the server), REGION (of the parameters), VPC_CIDR (the main VPC),
## LB_PORTS (LOW-HIGH), SERVICES, PARAMETERS and SLICES (per service, in one order: its name, its parameter, its
## EndpointSlice without endpoints as JSON).
python="${PYTHON:-python3}"
helpers="${LMRUN_SCRIPT_DIR:-/usr/local/lib/lmrun}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
for i in "${!SERVICES[@]}"; do
    service="${SERVICES[$i]}"
    parameter="${PARAMETERS[$i]}"
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
    if ! printf '%s' "${SLICES[$i]}" | "$python" "$helpers/serve_endpoints.py" "$value" "${VPC_CIDR:?}" \
        "${LB_PORTS:?}" >"$work/slice.json" 2>"$work/error"; then
        echo "lmrun: $service: $parameter: $(cat "$work/error"); its EndpointSlice is left as it is" >&2
        failed=1
        continue
    fi
    "${KUBECTL[@]}" apply -f "$work/slice.json" || failed=1
done
exit "$failed"
