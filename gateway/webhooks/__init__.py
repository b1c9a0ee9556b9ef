"""Webhook callbacks, in three modules along their seams: `policy` (which addresses a callback may
reach, enforced by the session's socket factory), `signing` (Standard Webhooks headers) and
`delivery` (the POST, its budget and retries). Nothing is re-exported here, so importing the
policy (as settings do) does not load delivery."""
