"""One adapter module per protocol: each decodes its requests, encodes its replies, shapes its
errors and lists its routes (ROUTES); a new protocol is one new module added to routes.py."""
