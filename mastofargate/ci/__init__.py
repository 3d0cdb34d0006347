"""mastofargate in the user's own repository: the CI workflows `ci init` writes and the pull-request
comment the review workflow posts."""
