"""The OAuth 2 / OpenID Connect / SMART authorization server (a package, so installs ship it)."""
