"""What the API speaks: request and response bodies, one module per resource.

Stored records are not here (`memlayer.models`, and the records in `memlayer.storage`); a body
is built from a record by its `of`. Entry points and services import these; storage never does."""
