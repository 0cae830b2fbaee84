"""`prefectstack client-config`: what a laptop, worker or CI job needs to use the
stack: the load balancer's API URL and the auth string, as shell exports, a
prefect.toml section, or a Prefect profile written with Prefect's own API."""

from __future__ import annotations

import shlex

from .settings import StackSettings

# Prefect 3.9.1 answers 500, not 503, while PostgreSQL is unreachable: the
# connection error reaches its 503 mapping (`is_client_retryable_exception`)
# wrapped in an ExceptionGroup. The client retries 429/502/503 with backoff; with
# 500 too, a PostgreSQL restart costs a client a few seconds instead of a failed
# run. A request answered 500 committed nothing, so re-sending it is safe.
RETRY_EXTRA_CODES = "500"


def client_values(s: StackSettings, url: str | None = None) -> dict[str, str]:
    # PREFECT_UI_API_URL is, by definition, the load balancer as users reach it.
    values = {
        "PREFECT_API_URL": url or s.ui_api_url,
        "PREFECT_API_AUTH_STRING": s.auth_string,
        "PREFECT_CLIENT_RETRY_EXTRA_CODES": RETRY_EXTRA_CODES,
    }
    if (ca := trusted_ca(s)) is not None:
        # The CA of a self-signed or private certificate; Prefect's client (HTTP
        # and websockets) verifies the load balancer against it.
        values["PREFECT_API_SSL_CERT_FILE"] = str(ca)
    return values


def trusted_ca(s: StackSettings):
    from .loadbalancer import tls

    found = tls.files(s)
    return found.ca if found is not None else None


def as_env(values: dict[str, str]) -> str:
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in values.items())


def as_toml(values: dict[str, str]) -> str:
    return (
        "# prefect.toml of a client project\n[api]\n"
        f'url = "{values["PREFECT_API_URL"]}"\n'
        f'auth_string = "{values["PREFECT_API_AUTH_STRING"]}"\n'
        + (f'ssl_cert_file = "{values["PREFECT_API_SSL_CERT_FILE"]}"\n'
           if "PREFECT_API_SSL_CERT_FILE" in values else "")
        + "\n[client]\n"
        f'retry_extra_codes = "{values["PREFECT_CLIENT_RETRY_EXTRA_CODES"]}"\n'
    )  # fmt: skip


def write_profile(name: str, values: dict[str, str], *, activate: bool) -> str:
    """Create or update a Prefect profile (in $PREFECT_HOME/profiles.toml)."""
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_SSL_CERT_FILE,
        PREFECT_API_URL,
        PREFECT_CLIENT_RETRY_EXTRA_CODES,
        load_profiles,
        save_profiles,
    )
    from prefect.settings.profiles import Profile

    profiles = load_profiles()
    settings = {
        PREFECT_API_URL: values["PREFECT_API_URL"],
        PREFECT_API_AUTH_STRING: values["PREFECT_API_AUTH_STRING"],
        PREFECT_CLIENT_RETRY_EXTRA_CODES: values["PREFECT_CLIENT_RETRY_EXTRA_CODES"],
    }
    if "PREFECT_API_SSL_CERT_FILE" in values:
        settings[PREFECT_API_SSL_CERT_FILE] = values["PREFECT_API_SSL_CERT_FILE"]
    if name in profiles.names:
        profiles.update_profile(name, settings)
    else:
        profiles.add_profile(Profile(name=name, settings=settings))
    if activate:
        profiles.set_active(name)
    save_profiles(profiles)
    return name
