"""The ``nhibroker`` Terraform provider (source address ``nhi-broker/nhibroker``), written with
the ``tf`` package and run by Terraform as the executable ``terraform-provider-nhibroker``.

    main.py          entry point (prints nothing before the plugin handshake)
    provider.py      provider schema and configuration (endpoint, admin token)
    client.py        the admin API client; errors become ``ApiError`` with the field named
    schema_util.py   what ``tf`` lacks: single nested blocks, object types, diagnostics on fields
    resources/       one module per resource type; ``base.py`` holds the shared CRUD
    data_sources.py  ``nhibroker_agent`` and ``nhibroker_policy_bundle``
    cli_config.py    the Terraform CLI configuration that finds this provider offline
"""

PROVIDER_SOURCE = "nhi-broker/nhibroker"
PROVIDER_HOSTNAME = "registry.terraform.io"
PROVIDER_VERSION = "0.1.0"
