"""A local AWS emulator for `make demo` and the end-to-end deploy tests — never used against real AWS, and
not part of the product: it lives beside the `mastofargate` package, so `pip wheel .` holds none of it.

`python -m sandbox --port 0` starts a moto server in this process with the patches below and prints
`sandbox: listening on http://127.0.0.1:N`. The *real* templates deploy unchanged; where moto 5.2 cannot do
what a template or the deploy needs, or does it unlike AWS, a module here does it AWS's way, and its
docstring lists each difference:

  standins        CloudFormation resource types moto does not model (ids, ARNs and attributes only)
  moto_fixes      small fixes of moto models the templates trip over (Ref/GetAtt values, VPC DNS, zone ids)
  ecs             ECS task definitions and services from CloudFormation, and what ECS does over time:
                  one-off tasks stop, deployments complete, the circuit breaker trips and rolls back
  cloudformation  change sets (exports, parameter-only changes, termination protection, event pages)
  operations      stack operations over time: services waited for, failures rolled back, as on AWS
  timing          how long emulated things take
  server          the server, the clock thread, `python -m sandbox`

Failures on purpose are the emulator's own, chosen by the image tag (the product has no switch for them):
`-sandbox-exit-N` makes a one-off task exit with N; `-sandbox-unhealthy` makes a service deployment trip
the circuit breaker (and so CloudFormation roll the stack back). See sandbox/ecs.py.
"""
