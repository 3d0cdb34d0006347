"""mastofargate: a Mastodon server on AWS ECS Fargate, with as little upkeep as possible."""

__version__ = "0.1.0"
