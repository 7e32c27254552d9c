"""The errors a request can end in, each with the protocol's status and code.

DaemonError
 ├─ BadRequest   400 bad_request
 ├─ Unauthorized 401 unauthorized
 ├─ Forbidden    403 forbidden
 ├─ NotFound     404 not_found
 ├─ Conflict     409 conflict
 └─ TooLarge     413 too_large

Anything else that escapes a handler is answered 500 `internal`.
"""


class DaemonError(Exception):
    status = 500
    code = "internal"


class BadRequest(DaemonError):
    status = 400
    code = "bad_request"


class Unauthorized(DaemonError):
    status = 401
    code = "unauthorized"


class Forbidden(DaemonError):
    status = 403
    code = "forbidden"


class NotFound(DaemonError):
    status = 404
    code = "not_found"


class Conflict(DaemonError):
    status = 409
    code = "conflict"


class TooLarge(DaemonError):
    status = 413
    code = "too_large"
