"""The sign-in routes: /api/session (sign in, sign out), /api/me, /api/tokens.

Added to the app by `make_app` (server/api.py), whose helpers read the body (`body`: bounded,
JSON) and shape error answers (`answer`). POST /api/session is public; the others need a user.
"""

from __future__ import annotations

from bottle import HTTPResponse, request, response

from server.auth import rules as R
from server.auth.authenticate import Authenticator, Refused
from server.auth.oidc import add_oidc_routes
from server.auth.users import UserError


def add_routes(app, authn: Authenticator | None, body, answer) -> None:
    @app.post("/api/session", rule=R.PUBLIC)
    def sign_in():
        data = body()
        name, password = data.get("user"), data.get("password")
        if not (isinstance(name, str) and isinstance(password, str) and name and password):
            return answer(400, {"error": 'body must be {"user": "...", "password": "..."}'})
        try:
            user, cookie = authn.sign_in(request.environ, name, password)
        except Refused as exc:
            res = answer(exc.status, {"error": exc.message})
            if exc.retry_after is not None:
                res.set_header("Retry-After", str(exc.retry_after))
            return res
        response.add_header("Set-Cookie", cookie)
        response.set_header("Cache-Control", "no-store")
        return _me(authn, user)

    @app.delete("/api/session", rule=R.SIGNED_IN)
    def sign_out():
        cookie = authn.sign_out(request.environ, R.current_user())
        return HTTPResponse(status=204, headers={"Set-Cookie": cookie})

    @app.get("/api/me", rule=R.SIGNED_IN)
    def me():
        return _me(authn, R.current_user())

    @app.get("/api/tokens", rule=R.SIGNED_IN)
    def tokens():
        return {"tokens": authn.users.tokens(R.current_user().name, authn.source)}

    @app.post("/api/tokens", rule=R.SIGNED_IN)
    def create_token():
        user = _personal(R.current_user())
        if user.method == "api-token":  # a leaked token must not mint others that outlive its revocation
            raise R.Forbidden("sign in to create a token: a token cannot create tokens")
        name = body().get("name")
        try:
            token_id, value = authn.users.create_token(user.name, name if isinstance(name, str) else "", authn.source)
        except UserError as exc:
            return answer(400, {"error": str(exc)})
        _audit(authn, "token.create", user.name, f"token:{token_id}")
        response.status = 201
        response.set_header("Cache-Control", "no-store")
        return {"id": token_id, "name": " ".join(name.split()), "token": value}

    @app.delete("/api/tokens/<token_id:int>", rule=R.SIGNED_IN)
    def revoke_token(token_id: int):
        user = _personal(R.current_user())
        if not authn.users.revoke_token(user.name, token_id, authn.source):
            return answer(404, {"error": f"you have no token {token_id}"})
        authn.revoked()
        _audit(authn, "token.revoke", user.name, f"token:{token_id}")
        return HTTPResponse(status=204)

    add_oidc_routes(app, authn, answer)  # /auth/oidc/*: 400 unless auth = oidc


def _personal(user):
    if user.method == "token":
        raise R.Forbidden("with auth = token the access token is the only credential: no personal tokens")
    return user


def _me(authn: Authenticator, user) -> dict:
    return {**user.public(), "auth": authn.catalog.settings.auth}


def _audit(authn: Authenticator, action: str, name: str, target: str) -> None:
    if authn.audit is not None:
        authn.audit.record(action, name, target=target)
