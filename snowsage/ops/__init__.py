"""The operator CLI's work, apart from parsing options: each operation takes a deployment and typed
inputs, returns a typed result and raises the project's errors; ``output`` renders any result as
text or JSON.

One module per area: ``snowflake_sql`` (the admin's SQL), ``credentials`` (key pairs, stored
credentials), ``check`` and ``notebook``; ``deployment`` opens a deployment and answers what several
of them ask; ``secret_input`` reads secrets the only ways they may arrive.
"""
