"""Where Mastodon 4.5 reads each environment variable the generated containers set.

Checked by hand in Mastodon's source at tag v4.5.15 (commit 91173cdc977c94ed1b6d6924b0baca3a72b9338c, read
from glitch-soc/mastodon, which carries upstream's release tags unchanged). Each entry names the file and
line that reads the variable, per kind of process:

- `web`       Puma (`bundle exec puma -C config/puma.rb`): Rails plus config/puma.rb;
- `sidekiq`   `bundle exec sidekiq`: Rails with `Sidekiq.server?` true;
- `job`       one-off tasks (`rails db:migrate`, `tootctl`): Rails, neither Puma nor a Sidekiq server;
- `streaming` the Node streaming server (`node ./streaming/index.js`), which reads only streaming/*.js.

tests/test_environment.py fails when a container sets a name that its process does not read (a typo, or a
variable that does nothing there), so a new variable needs its reading line here first.
"""

from __future__ import annotations

MASTODON_TAG = "v4.5.15"
MASTODON_COMMIT = "91173cdc977c94ed1b6d6924b0baca3a72b9338c"

RAILS = ("web", "sidekiq", "job")

# name -> {process kind -> "path:line" of the read}
READS: dict[str, dict[str, str]] = {}


def _reads(name: str, where: str, kinds: tuple[str, ...] = RAILS) -> None:
    READS.setdefault(name, {}).update({k: where for k in kinds})


# Database (config/database.yml's `production.primary` block; streaming/database.js)
_reads("DB_POOL", "config/database.yml:3")
_reads("DB_POOL", "streaming/database.js:105", ("streaming",))
_reads("DB_SSLMODE", "config/database.yml:7")
_reads("DB_SSLMODE", "streaming/database.js:86", ("streaming",))
_reads("DB_NAME", "config/database.yml:50")
_reads("DB_NAME", "streaming/database.js:17", ("streaming",))
_reads("DB_USER", "config/database.yml:51")
_reads("DB_USER", "streaming/database.js:15", ("streaming",))
_reads("DB_PASS", "config/database.yml:52")
_reads("DB_PASS", "streaming/database.js:16", ("streaming",))
_reads("DB_HOST", "config/database.yml:53")
_reads("DB_HOST", "streaming/database.js:18", ("streaming",))
_reads("DB_PORT", "config/database.yml:54")
_reads("DB_PORT", "streaming/database.js:19", ("streaming",))

# Redis (lib/mastodon/redis_configuration.rb builds "#{prefix}REDIS_*" names; streaming/redis.js)
_reads("REDIS_URL", "lib/mastodon/redis_configuration.rb:40")
_reads("REDIS_URL", "streaming/redis.js:80", ("streaming",))
_reads("REDIS_PASSWORD", "lib/mastodon/redis_configuration.rb:42")
_reads("REDIS_PASSWORD", "streaming/redis.js:104", ("streaming",))
_reads("REDIS_HOST", "lib/mastodon/redis_configuration.rb:43")
_reads("REDIS_HOST", "streaming/redis.js:100", ("streaming",))
_reads("REDIS_PORT", "lib/mastodon/redis_configuration.rb:44")
_reads("REDIS_PORT", "streaming/redis.js:95", ("streaming",))
_reads("REDIS_DRIVER", "lib/mastodon/redis_configuration.rb:34")  # Rails only: ioredis takes TLS from rediss://

# Process tuning: Puma alone reads WEB_CONCURRENCY; MAX_THREADS sizes Puma's threads and, outside a Sidekiq
# server, the Redis pool (app/lib/redis_connection.rb:20); Sidekiq uses its own concurrency instead.
_reads("WEB_CONCURRENCY", "config/puma.rb:16", ("web",))
_reads("MAX_THREADS", "config/puma.rb:5", ("web",))
_reads("MAX_THREADS", "app/lib/redis_connection.rb:20", ("job",))

# Host names and modes
_reads("LOCAL_DOMAIN", "config/initializers/1_hosts.rb:4")
_reads("WEB_DOMAIN", "config/initializers/1_hosts.rb:5")
_reads("SINGLE_USER_MODE", "config/initializers/single_user_mode.rb:4")
_reads("CDN_HOST", "config/environments/production.rb:32")

# Secrets. SECRET_KEY_BASE is read by Rails itself (Rails::Application#secret_key_base); Mastodon's
# setup task names it where it generates it.
_reads("SECRET_KEY_BASE", "lib/tasks/mastodon.rake:41")
_reads("VAPID_PRIVATE_KEY", "config/vapid.yml:16")
_reads("VAPID_PUBLIC_KEY", "config/vapid.yml:17")
_reads("ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY", "config/initializers/active_record_encryption.rb:40")
_reads("ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT", "config/initializers/active_record_encryption.rb:41")
_reads("ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "config/initializers/active_record_encryption.rb:42")
# Only servers pinned to 4.3 get it; 4.5 still reads it in the post-deployment migration that moves old
# two-factor secrets.
_reads("OTP_SECRET", "db/post_migrate/20240307180905_migrate_devise_two_factor_secrets.rb:88")

# Media storage (config/initializers/paperclip.rb)
_reads("S3_ENABLED", "config/initializers/paperclip.rb:38")
_reads("S3_REGION", "config/initializers/paperclip.rb:41")
_reads("S3_PROTOCOL", "config/initializers/paperclip.rb:42")
_reads("S3_PERMISSION", "config/initializers/paperclip.rb:75")
_reads("S3_BUCKET", "config/initializers/paperclip.rb:61")
_reads("S3_ALIAS_HOST", "config/initializers/paperclip.rb:89")

# Mail (config/email.yml, production block)
_reads("SMTP_DELIVERY_METHOD", "config/email.yml:4")
_reads("SMTP_FROM_ADDRESS", "config/email.yml:5")
_reads("SMTP_PORT", "config/email.yml:9")
_reads("SMTP_SERVER", "config/email.yml:10")
_reads("SMTP_LOGIN", "config/email.yml:11")
_reads("SMTP_PASSWORD", "config/email.yml:12")
_reads("SMTP_AUTH_METHOD", "config/email.yml:14")
_reads("SMTP_ENABLE_STARTTLS", "config/email.yml:17")

# Migrations (lib/mastodon/database.rb skips post-deployment migrations while it is set)
_reads("SKIP_POST_DEPLOYMENT_MIGRATIONS", "lib/mastodon/database.rb:31", ("job",))


# Read by what runs around Mastodon rather than by Mastodon, when Redis runs in a task speaking TLS
# (stack/cache.py redis_tls): name -> {process kind -> reader}. tests/test_environment.py checks that the
# start wrapper named here mentions each name it is said to read.
RUNTIME_READS: dict[str, dict[str, str]] = {
    # Ruby's OpenSSL (X509_STORE_set_default_paths): the default trust store of every Rails process
    "SSL_CERT_FILE": {k: "openssl" for k in RAILS},
    # Node reads it once at start and adds it to its built-in roots (ioredis verifies with them)
    "NODE_EXTRA_CA_CERTS": {"streaming": "node"},
    # mastofargate/data/trust-redis-ca.sh writes the CA from it, then unsets it
    "REDIS_CA_CERT": {k: "trust-redis-ca.sh" for k in (*RAILS, "streaming")},
}
