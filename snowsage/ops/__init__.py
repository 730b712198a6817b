"""What the operator CLI does, without the CLI: each function takes a deployment and typed inputs,
returns a typed result (``output`` renders it as text or JSON) and raises the project's errors.

One module per area: ``snowflake_sql`` (the admin's SQL), ``credentials`` (key pairs, stored
credentials), ``check`` and ``notebook``; ``deployment`` opens a deployment and answers what several
of them ask; ``secret_input`` reads secrets the only ways they may arrive.
"""
