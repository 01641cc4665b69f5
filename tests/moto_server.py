"""moto's server, with DynamoDB requests applied one at a time.

Real DynamoDB applies each conditional write and each transaction atomically. moto's threaded
server checks a condition and then writes without a lock, so two racing conditional writes (a
lease both contenders take, a decision counter both writers bump) can both pass there. The race
tests of the DynamoDB store assert the atomicity the real service gives, so they run against
this wrapper: DynamoDB calls are serialised, everything else (SQS long polls included) stays
threaded. Arguments are moto.server's (`-H HOST -p PORT`).
"""

import sys
import threading

import moto.server as server

_dynamodb = threading.Lock()
_call = server.DomainDispatcherApplication.__call__


def _serialised(self, environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with _dynamodb:
            # The whole response is produced under the lock.
            return list(_call(self, environ, start_response))
    return _call(self, environ, start_response)


server.DomainDispatcherApplication.__call__ = _serialised

if __name__ == "__main__":
    server.main(sys.argv[1:])
