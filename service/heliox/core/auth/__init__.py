"""Who may call the API: API keys (keys, store, cache), OIDC tokens (tokens), and the gate that
turns a request's credential into a caller, its role and its rate limit (gate).

Nothing here knows HTTP statuses: the gate answers with an outcome, api/auth.py maps outcomes to
401, 403, 429 and 503. The database functions (store) take a Session and raise nothing HTTP.
"""
