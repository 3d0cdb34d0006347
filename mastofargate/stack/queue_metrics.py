"""Sidekiq backlog metrics, published the cheapest way there is: CloudWatch embedded metric format (EMF).

Small servers die quietly when Sidekiq's queues back up (federation stops, mail stops), and CloudWatch has
no metric for it. Ways to publish one, by cost:
- a scheduled Fargate task reading Redis every 5 minutes: ~$2.50/month (a minute's minimum billing per run,
  a public IPv4 address while it runs) for coarse data;
- PutMetricData from a sidecar: needs API calls and a role permission for them;
- EMF lines from a sidecar (chosen): a ~16 MiB container in the task that already runs the `scheduler`
  queue (exactly one such task exists) prints one JSON line a minute to its log stream; CloudWatch Logs
  turns the line into metrics itself. Nothing is billed but the metrics and a few KB of logs a day.

The sidecar runs the Redis image already used for Redis tasks (`redis-cli`, public ECR) and evaluates
`QUEUE_METRICS_LUA` inside Redis, which reads Sidekiq's own structures the way Sidekiq's API does
(`queues` set, `queue:NAME` lists whose right end is the oldest job, `enqueued_at` in milliseconds since
Sidekiq 8 (Mastodon 4.5 locks sidekiq 8.0.9), seconds before; `retry`, `dead`, `schedule` sorted sets) and
returns the EMF document, encoded by Redis's cjson. Custom metrics cost $0.30 each a month, so only four
are metrics (`METRICS`, dimension Server): the oldest job's wait (the alarm), and the enqueued, retrying
and dead job counts; each queue's size and wait ride along in the same line as plain properties
(`Queues`), which `status` reads from the log and Logs Insights can chart at no extra cost.
"""

from __future__ import annotations

from troposphere import Ref, ecs

from mastofargate.sizing import ServiceSize
from mastofargate.stack.context import Build

NAMESPACE = "Mastodon/Sidekiq"
CONTAINER = "queue-metrics"
STREAM_PREFIX = "queue-metrics"
INTERVAL_SECONDS = 60
METRICS = (
    ("OldestJobSeconds", "Seconds"),
    ("EnqueuedJobs", "Count"),
    ("RetryJobs", "Count"),
    ("DeadJobs", "Count"),
)
# The alarm: the oldest waiting job has waited this long for 3 minutes in a row. Sidekiq jobs normally
# start within seconds; 5 minutes means the workers are stuck, dead or hopelessly behind.
BACKLOG_ALARM_SECONDS = 300

QUEUE_METRICS_LUA = """
local server = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local names = redis.call('SMEMBERS', 'queues')
table.sort(names)
local queues, total, oldest = {}, 0, 0
for _, name in ipairs(names) do
  local size = redis.call('LLEN', 'queue:' .. name)
  local wait = 0
  if size > 0 then
    local ok, job = pcall(cjson.decode, redis.call('LINDEX', 'queue:' .. name, -1))
    if ok and type(job) == 'table' and tonumber(job['enqueued_at']) then
      local at = tonumber(job['enqueued_at'])
      if at > 100000000000 then at = at / 1000 end
      wait = math.max(0, now - at)
    end
  end
  wait = math.floor(wait * 10 + 0.5) / 10
  queues[name] = {size = size, latency = wait}
  total = total + size
  if wait > oldest then oldest = wait end
end
local metrics = {}
for _, m in ipairs(cjson.decode(ARGV[2])) do
  table.insert(metrics, {Name = m[1], Unit = m[2]})
end
return cjson.encode({
  _aws = {
    Timestamp = math.floor(now * 1000),
    CloudWatchMetrics = {{Namespace = ARGV[3], Dimensions = {{'Server'}}, Metrics = metrics}},
  },
  Server = server,
  OldestJobSeconds = oldest,
  EnqueuedJobs = total,
  RetryJobs = redis.call('ZCARD', 'retry'),
  DeadJobs = redis.call('ZCARD', 'dead'),
  ScheduledJobs = redis.call('ZCARD', 'schedule'),
  Queues = queues,
})
""".strip()

# The password reaches redis-cli through REDISCLI_AUTH, never its command line. ElastiCache (REDIS_URL,
# rediss://:PASSWORD@HOST:PORT) is verified against REDIS_CA_FILE, by default the image's CA bundle
# (ElastiCache's certificates chain to Amazon's public roots), or unverified where the image has none.
# A Redis task (stack/cache.py redis_tls) is verified against the server's own CA, REDIS_CA_CERT (a secret).
SIDECAR_SCRIPT = """
trap 'exit 0' TERM INT
if [ -n "${REDIS_URL:-}" ]; then
  rest="${REDIS_URL#*://}"; auth="${rest%@*}"; export REDISCLI_AUTH="${auth#:}"
  hostport="${rest##*@}"; hostport="${hostport%%/*}"
  ca="${REDIS_CA_FILE:-/etc/ssl/certs/ca-certificates.crt}"
  if [ -n "${REDIS_CA_CERT:-}" ]; then
    ca="$(mktemp)"; printf '%s\\n' "$REDIS_CA_CERT" >"$ca"
  fi
  if [ -f "$ca" ]; then tls="--cacert $ca"; else tls="--insecure"; fi
  set -- -h "${hostport%:*}" -p "${hostport##*:}" --tls $tls
else
  export REDISCLI_AUTH="$REDIS_PASSWORD"
  set -- -h "$REDIS_HOST" -p "$REDIS_PORT"
fi
while :; do
  redis-cli "$@" --no-auth-warning EVAL "$QUEUE_METRICS_LUA" 0 "$SERVER_NAME" "$QUEUE_METRICS" "$METRICS_NAMESPACE" \\
    || echo "queue-metrics: Redis did not answer" >&2
  sleep INTERVAL & wait $!
done
""".strip().replace("INTERVAL", str(INTERVAL_SECONDS))


def metrics_json() -> str:
    import json

    return json.dumps([list(m) for m in METRICS], separators=(",", ":"))


def wanted(size: ServiceSize) -> bool:
    """Only the task running the scheduler queue (exactly one exists) publishes, so no line is doubled."""
    return size.role == "sidekiq" and size.singleton


def sidecar(
    b: Build,
    size: ServiceSize,
    log_group: object,
    image: str,
    redis_env: dict[str, object],
    redis_secrets: list[ecs.Secret],
) -> ecs.ContainerDefinition:
    """The non-essential metrics container of the scheduler's Sidekiq task (its own log stream prefix)."""
    env = {
        "QUEUE_METRICS_LUA": QUEUE_METRICS_LUA,
        "QUEUE_METRICS": metrics_json(),
        "METRICS_NAMESPACE": NAMESPACE,
        "SERVER_NAME": b.name,
        **redis_env,
    }
    return ecs.ContainerDefinition(
        Name=CONTAINER,
        Image=image,
        Essential=False,  # Sidekiq keeps working if the metrics stop (and the alarm treats missing data as OK)
        MemoryReservation=16,
        EntryPoint=["sh", "-c"],
        Command=[SIDECAR_SCRIPT],
        Environment=[ecs.Environment(Name=k, Value=v) for k, v in sorted(env.items())],
        Secrets=redis_secrets,
        LogConfiguration=ecs.LogConfiguration(
            LogDriver="awslogs",
            Options={
                "awslogs-group": Ref(log_group),
                "awslogs-region": Ref("AWS::Region"),
                "awslogs-stream-prefix": STREAM_PREFIX,
            },
        ),
    )
