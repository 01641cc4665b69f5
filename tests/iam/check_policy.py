#!/usr/bin/env python3
"""Checks that the controller's IAM task role grants exactly what the code calls.

The AWS calls are derived from the code, not from a hand-kept list that could drift:

1. Every SDK operation the Rust sources call is found: a zero-argument method call
   `.operation_name()` (the SDK's fluent builders, e.g. `client.transact_write_items()`) whose
   name is an operation of an `aws-sdk-*` crate the file uses. The operation names come from the
   SDK crates themselves (the directories under `src/operation/` of each crate, at the version in
   Cargo.lock, in the cargo registry under $CARGO_HOME). A file "uses" a crate when it names
   `aws_sdk_<service>` or calls one of the client constructors of `src/aws.rs`
   (`aws::s3(conf)` ...). Test code (`#[cfg(test)]` items and modules) is left out.
   Ambiguity is resolved conservatively: an operation name that belongs to two services a file
   uses is attributed by its receiver (`s3.put_object()`, `self.athena.stop_query_execution()`);
   if the receiver does not say, the check FAILS and asks for a receiver named after the service,
   rather than guessing (a wrong guess could hide a missing grant).
2. Operations become IAM actions: `service:PascalCaseOperation`, except where AWS authorizes an
   operation under another action (Bedrock `Converse` is `bedrock:InvokeModel`, S3 `HeadBucket`
   is `s3:ListBucket`, ...: [`ACTION_OF`]). DynamoDB `TransactWriteItems` has no action of its
   own: each item kind the code builds (`Put`, `Delete`, `Update`, `ConditionCheck`) needs its
   own action (`PutItem`, ... `ConditionCheckItem`). STS `GetCallerIdentity` needs no permission.
3. Calls made only by administrator commands (`sqlctl aws bootstrap`, which creates what
   Terraform creates here) are not the controller's and must NOT be in the task role: they are
   listed in [`ADMIN_ONLY`] by function; an entry that no longer matches any call fails the check
   (so the list cannot go stale silently).
4. `terraform/*.tf` is parsed with python-hcl2 and the task role's inline policy documents
   (`data "aws_iam_policy_document"` attached to `aws_iam_role.task` with `aws_iam_role_policy`)
   are checked: every required action is granted; no granted action is beyond the required ones
   and the ones Athena needs on the caller's behalf ([`IMPLIED`]); no `*` in an action; no `*`
   resource (except for actions AWS authorizes only on `*`, [`STAR_ONLY`]); each grant names the
   Terraform resources of its own service; DynamoDB `Query` on an index (the code passes
   `.index_name(...)`) is granted on index ARNs. Every other policy document in terraform/ gets
   the same wildcard lint, and the requester/approver documents must constrain every DynamoDB
   statement with `dynamodb:LeadingKeys`.
5. The attributes the people's roles may write (`dynamodb:Attributes`, locals in
   terraform/iam_people.tf) must equal what the code writes into those items, minus what only the
   controller may write (the request status `st`): [`ATTRIBUTE_LISTS`].
6. No person's role may write a decision record: a people document's DynamoDB write must be
   limited by LeadingKeys to partitions that cannot be `DEC#...` (decisions reach the controller
   over SQS, which authenticates the sender, and only the controller writes them).

Exit status 0 when everything holds; 1 with a list of what is missing or too broad.
`--self-test` proves the check fails when the code gains an AWS call that Terraform does not
grant (and in the other failure modes), on temporary copies of the tree.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

try:
    import hcl2  # python-hcl2
except ImportError:  # pragma: no cover - reported, never skipped
    hcl2 = None

# --------------------------------------------------------------------------------------------
# What the code's operations mean to IAM.

#: IAM service prefix per SDK crate (`aws-sdk-<crate>`), where they differ.
IAM_PREFIX = {"bedrockruntime": "bedrock"}

#: Operations AWS authorizes under a different action (or several). `[]` means no permission.
ACTION_OF = {
    ("bedrockruntime", "converse"): ["bedrock:InvokeModel"],
    ("bedrockruntime", "converse_stream"): ["bedrock:InvokeModelWithResponseStream"],
    ("s3", "head_bucket"): ["s3:ListBucket"],
    ("s3", "head_object"): ["s3:GetObject"],
    ("s3", "list_objects"): ["s3:ListBucket"],
    ("s3", "list_objects_v2"): ["s3:ListBucket"],
    ("s3", "list_object_versions"): ["s3:ListBucketVersions"],
    ("s3", "delete_objects"): ["s3:DeleteObject"],
    ("s3", "create_multipart_upload"): ["s3:PutObject"],
    ("s3", "upload_part"): ["s3:PutObject"],
    ("s3", "complete_multipart_upload"): ["s3:PutObject"],
    ("s3", "copy_object"): ["s3:GetObject", "s3:PutObject"],
    ("sts", "get_caller_identity"): [],  # AWS: "No permissions are required"
    ("dynamodb", "transact_get_items"): ["dynamodb:GetItem"],
    ("dynamodb", "transact_write_items"): [],  # per item kind, see TRANSACT_ITEM_ACTIONS
}

#: Item builders inside a DynamoDB transaction and the action each needs.
TRANSACT_ITEM_ACTIONS = {
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Put": "dynamodb:PutItem",
    "Delete": "dynamodb:DeleteItem",
    "Update": "dynamodb:UpdateItem",
}

#: Functions whose calls are made only by administrator commands, never by the controller:
#: path -> function names (None: the whole file). Terraform creates these resources instead.
ADMIN_ONLY = {
    "src/cli/aws.rs": None,  # `sqlctl aws bootstrap` / `whoami`, run with an administrator's credentials
    "src/store/dynamodb/bootstrap.rs": {"create_table"},  # called by bootstrap only
    "src/catalog/glue.rs": {"register_tables"},  # `bootstrap --register-local` only
}

#: Actions that AWS authorizes only on resource `*`.
STAR_ONLY = {"ecr:GetAuthorizationToken", "sts:GetCallerIdentity", "cloudwatch:PutMetricData"}

#: Actions granted although the code does not call them, because a service the code calls acts
#: with the caller's permissions: trigger action -> {implied action: why}.
IMPLIED = {
    "athena:StartQueryExecution": {
        "glue:GetDatabase": "Athena reads the query's database from Glue as the caller",
        "glue:GetTable": "Athena reads table definitions from Glue as the caller",
        "glue:GetPartition": "Athena reads partitions from Glue as the caller",
        "glue:GetPartitions": "Athena reads partitions from Glue as the caller",
        "glue:BatchGetPartition": "Athena reads partitions from Glue as the caller",
        "s3:GetBucketLocation": "Athena locates the data and results buckets as the caller",
        "s3:ListBucket": "Athena lists table data and the results prefix as the caller",
        "s3:GetObject": "Athena reads table data as the caller",
        "s3:PutObject": "Athena writes query results to the results bucket as the caller",
        "s3:AbortMultipartUpload": "Athena writes large results as multipart uploads",
        "s3:ListMultipartUploadParts": "Athena writes large results as multipart uploads",
        "s3:ListBucketMultipartUploads": "Athena writes large results as multipart uploads",
    },
}

#: Each granted action's resources must reference one of these (Terraform resources, locals or
#: variables of that service), so that a grant names the resources this module manages.
RESOURCE_REFS = {
    "dynamodb": [r"aws_dynamodb_table\."],
    "sqs": [r"aws_sqs_queue\."],
    "athena": [r"aws_athena_workgroup\."],
    "s3": [r"aws_s3_bucket\.", r"local\.data_"],
    "glue": [r"local\.glue_"],
    "bedrock": [r"local\.bedrock_"],
    "secretsmanager": [r"aws_secretsmanager_secret\.", r"local\.webhook_secret"],
}

#: HCL locals that list the attributes a person's DynamoDB write may carry (dynamodb:Attributes),
#: and where the code builds that item: local -> (file, functions whose `.insert("attr", ...)`
#: calls build it, attributes the code writes that people must never write). The lists must equal
#: what the code writes minus those, so a new attribute cannot silently break (or widen) the
#: people's roles.
ATTRIBUTE_LISTS = {
    "request_create_attributes": ("src/store/dynamodb/codec.rs", ("request_item_mut", "change_attrs"), {"st", "ttl"}),
}

#: Policy documents the task role's inline policies come from are found through this role.
TASK_ROLE = "task"
#: Policy documents of the people's roles: every DynamoDB statement must use LeadingKeys.
PEOPLE_DOCUMENTS = {"requester", "approver"}


#: Marks a line whose operation-like call is not an AWS call (see scan_sources).
NOT_AWS_MARK = "iam-check: not an AWS call"


class CheckError(Exception):
    """The tree cannot be checked at all (missing crate, unreadable HCL...)."""


# --------------------------------------------------------------------------------------------
# SDK crates


def cargo_home() -> Path:
    return Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")


def sdk_crates(root: Path) -> dict[str, set[str]]:
    return _sdk_crates((root / "Cargo.lock").read_text())


@functools.lru_cache(maxsize=8)
def _sdk_crates(lock: str) -> dict[str, set[str]]:
    """Service -> operation names (snake_case), from the SDK crates at Cargo.lock's versions."""
    versions = dict(re.findall(r'name = "aws-sdk-([a-z0-9]+)"\nversion = "([^"]+)"', lock))
    if not versions:
        raise CheckError("Cargo.lock lists no aws-sdk-* crate")
    registry = cargo_home() / "registry" / "src"
    out: dict[str, set[str]] = {}
    for svc, ver in sorted(versions.items()):
        dirs = sorted(registry.glob(f"*/aws-sdk-{svc}-{ver}/src/operation"))
        if not dirs:
            raise CheckError(
                f"the source of aws-sdk-{svc} {ver} is not in {registry}: run `cargo fetch --locked` first "
                f"(the operation names come from the crate)"
            )
        ops = {p.name for p in dirs[0].iterdir() if p.is_dir()}
        if not ops:
            raise CheckError(f"{dirs[0]} has no operation directories: unexpected SDK layout")
        out[svc] = ops
    return out


def pascal(op: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in op.split("_"))


def actions_of(svc: str, op: str) -> list[str]:
    if (svc, op) in ACTION_OF:
        return ACTION_OF[(svc, op)]
    return [f"{IAM_PREFIX.get(svc, svc)}:{pascal(op)}"]


# --------------------------------------------------------------------------------------------
# Rust sources

_CHAR = re.compile(r"""b?'(?:[^'\\\n]|\\(?:[nrt0'"\\]|x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}))'""")
_RAW = re.compile(r'b?r(#*)"')


def blank(text: str) -> str:
    """The source with comments, string and char literals replaced by spaces (offsets and line
    numbers kept), so braces and calls are found only in code."""
    out = list(text)
    i, n = 0, len(text)

    def wipe(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            wipe(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            wipe(i, j)
            i = j
        elif (m := _RAW.match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + m.group(1)
            j = text.find(end, m.end())
            j = n if j < 0 else j + len(end)
            wipe(i, j)
            i = j
        elif c == '"' or (c == "b" and text.startswith('b"', i) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_"))):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            wipe(i, j + 1)
            i = j + 1
        elif c in "'b" and (m := _CHAR.match(text, i)) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            wipe(i, m.end())
            i = m.end()
        else:
            i += 1
    return "".join(out)


def matching_brace(code: str, open_at: int) -> int:
    depth = 0
    for k in range(open_at, len(code)):
        if code[k] == "{":
            depth += 1
        elif code[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(code) - 1


def item_end(code: str, start: int) -> int:
    """End of the item starting at `start`: its matching `}` or its `;`, whichever comes first."""
    for k in range(start, len(code)):
        if code[k] == ";":
            return k
        if code[k] == "{":
            return matching_brace(code, k)
    return len(code) - 1


_CFG_TEST = re.compile(r"#\[cfg\(\s*test\s*\)\]")
_TEST_ATTR = re.compile(r"#\[(?:tokio::)?test\b[^\]]*\]")


@functools.lru_cache(maxsize=1024)
def clean(text: str) -> tuple[str, tuple[str, ...]]:
    """`text` without comments, literals and test code; and its `#[cfg(test)] mod x;` names."""
    code, mods = strip_tests(blank(text))
    return code, tuple(mods)


def strip_tests(code: str) -> tuple[str, list[str]]:
    """Blanks `#[cfg(test)]` items and `#[test]` functions; returns the code and the names of
    `#[cfg(test)] mod name;` declarations (test modules in files of their own)."""
    out = list(code)
    test_mods: list[str] = []
    for pat in (_CFG_TEST, _TEST_ATTR):
        for m in pat.finditer(code):
            end = item_end(code, m.end())
            decl = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code[m.end() : end + 1])
            if decl:
                test_mods.append(decl.group(1))
            for k in range(m.start(), end + 1):
                if out[k] != "\n":
                    out[k] = " "
    return "".join(out), test_mods


def module_file(decl_file: Path, name: str) -> list[Path]:
    base = decl_file.parent if decl_file.name in ("mod.rs", "lib.rs", "main.rs") else decl_file.with_suffix("")
    return [base / f"{name}.rs", base / name / "mod.rs"]


@dataclass
class Call:
    file: str
    line: int
    function: str
    service: str
    op: str

    def where(self) -> str:
        return f"{self.file}:{self.line} (fn {self.function})"


@dataclass
class Scan:
    calls: list[Call] = field(default_factory=list)
    #: (file, line, service) of DynamoDB transaction item builders.
    transact_items: list[tuple[str, int, str]] = field(default_factory=list)
    #: Files that query a DynamoDB index (`.index_name(`).
    index_queries: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def constructors(root: Path) -> dict[str, str]:
    """`crate::aws::<fn>(conf)` client constructors -> service, read from src/aws.rs."""
    path = root / "src" / "aws.rs"
    if not path.exists():
        return {}
    text = path.read_text()
    return dict(re.findall(r"pub fn (\w+)\s*\([^)]*\)\s*->\s*aws_sdk_(\w+)::Client", text))


def line_index(code: str):
    """offset -> 1-based line number."""
    starts = [0] + [m.end() for m in re.finditer("\n", code)]
    return lambda at: bisect.bisect_right(starts, at)


def brace_pairs(code: str) -> dict[int, int]:
    pairs, stack = {}, []
    for k, ch in enumerate(code):
        if ch == "{":
            stack.append(k)
        elif ch == "}" and stack:
            pairs[stack.pop()] = k
    return pairs


def functions(code: str) -> list[tuple[int, int, str]]:
    """(body start, body end, name) of every fn with a body."""
    out = []
    pairs = brace_pairs(code)
    for m in re.finditer(r"\bfn\s+(\w+)", code):
        k = m.end()
        while k < len(code) and code[k] not in "{;":
            k += 1
        if k < len(code) and code[k] == "{":
            out.append((k, pairs.get(k, len(code) - 1), m.group(1)))
    return out


def enclosing(fns: list[tuple[int, int, str]], at: int) -> str:
    best = None
    for a, b, name in fns:
        if a <= at <= b and (best is None or a > best[0]):
            best = (a, name)
    return best[1] if best else "<top level>"


def scan_sources(root: Path, ops: dict[str, set[str]]) -> Scan:
    scan = Scan()
    ctor = constructors(root)
    src = root / "src"
    files = sorted(src.rglob("*.rs"))
    excluded: set[Path] = set()
    cleaned: dict[Path, str] = {}
    for f in files:
        code, mods = clean(f.read_text())
        cleaned[f] = code
        for name in mods:
            excluded.update(p.resolve() for p in module_file(f, name))
    all_ops: dict[str, set[str]] = {}
    for svc, names in ops.items():
        for op in names:
            all_ops.setdefault(op, set()).add(svc)
    ctor_re = re.compile(r"\baws::(" + "|".join(map(re.escape, ctor)) + r")\s*\(") if ctor else None
    call_re = re.compile(r"\.\s*([a-z_][a-z0-9_]*)\s*\(\s*\)")
    for f in files:
        if f.resolve() in excluded:
            continue
        rel = f.relative_to(root).as_posix()
        code = cleaned[f]
        used = set(re.findall(r"\baws_sdk_([a-z0-9]+)\b", code)) & ops.keys()
        if ctor_re is not None:
            used.update(ctor[name] for name in ctor_re.findall(code) if ctor[name] in ops)
        if not used:
            # A file that names no SDK crate should make no SDK call; one that looks like it
            # (an operation name called without arguments) cannot be attributed, so it fails.
            lines = f.read_text().split("\n")
            for m in call_re.finditer(code):
                if m.group(1) in all_ops:
                    line = code.count("\n", 0, m.start(1)) + 1
                    if NOT_AWS_MARK in lines[line - 1]:
                        continue
                    scan.errors.append(
                        f"{rel}:{line}: `.{m.group(1)}()` looks like an AWS SDK call ({', '.join(sorted(all_ops[m.group(1)]))}) "
                        f"but {rel} names no aws_sdk_* crate, so it cannot be attributed: import the client type "
                        f"(`use aws_sdk_<service>::Client`), or, if it is not an AWS call, end the line with "
                        f"`// {NOT_AWS_MARK}`"
                    )
            continue
        fns = functions(code)
        line_of = line_index(code)
        for m in call_re.finditer(code):
            op = m.group(1)
            cands = all_ops.get(op, set()) & used
            if not cands:
                continue
            line = line_of(m.start(1))
            fn_name = enclosing(fns, m.start(1))
            if len(cands) > 1:
                before = re.search(r"([A-Za-z_][\w.]*)\s*$", code[max(0, m.start() - 120) : m.start()])
                receiver_expr = before.group(1) if before else "?"
                receiver = receiver_expr.split(".")[-1]
                named = {s for s in cands if receiver == s or receiver == ctor_name(ctor, s)}
                if len(named) != 1:
                    scan.errors.append(
                        f"{rel}:{line}: `.{op}()` is an operation of {' and '.join(sorted(cands))}, and the receiver "
                        f"`{receiver_expr}` does not say which: name the client after its service "
                        f"(e.g. `{sorted(cands)[0]}.{op}()`) so the IAM check can attribute it"
                    )
                    continue
                cands = named
            scan.calls.append(Call(rel, line, fn_name, next(iter(cands)), op))
        if "dynamodb" in used:
            for m in re.finditer(r"\b(ConditionCheck|Put|Delete|Update)::builder\s*\(", code):
                line = code.count("\n", 0, m.start()) + 1
                scan.transact_items.append((rel, line, m.group(1), enclosing(fns, m.start())))
            if re.search(r"\.\s*(?:set_)?index_name\s*\(", code):
                scan.index_queries.append(rel)
    return scan


def ctor_name(ctor: dict[str, str], svc: str) -> str:
    for name, s in ctor.items():
        if s == svc:
            return name
    return svc


@dataclass
class Required:
    #: action -> call sites that need it
    task: dict[str, list[str]] = field(default_factory=dict)
    #: action -> call sites made only by administrator commands
    admin: dict[str, list[str]] = field(default_factory=dict)
    #: calls needing no permission
    free: list[str] = field(default_factory=list)
    query_indexes: bool = False


def is_admin(file: str, function: str) -> bool:
    if file not in ADMIN_ONLY:
        return False
    fns = ADMIN_ONLY[file]
    return fns is None or function in fns


def required_actions(scan: Scan) -> tuple[Required, list[str]]:
    req = Required()
    problems: list[str] = []
    used_admin: set[tuple[str, str | None]] = set()
    transact_fns = {(c.file, c.function) for c in scan.calls if c.op == "transact_write_items"}
    has_transact = bool(transact_fns)
    for c in scan.calls:
        acts = actions_of(c.service, c.op)
        admin = is_admin(c.file, c.function)
        if admin:
            used_admin.add((c.file, c.function if ADMIN_ONLY[c.file] else None))
        if not acts:
            req.free.append(f"{c.service}:{pascal(c.op)} at {c.where()}")
        for a in acts:
            (req.admin if admin else req.task).setdefault(a, []).append(c.where())
    for file, line, kind, fn_name in scan.transact_items:
        if not has_transact:
            continue
        a = TRANSACT_ITEM_ACTIONS[kind]
        where = f"{file}:{line} (fn {fn_name}, {kind} in TransactWriteItems)"
        (req.admin if is_admin(file, fn_name) else req.task).setdefault(a, []).append(where)
    req.query_indexes = bool(scan.index_queries) and "dynamodb:Query" in req.task
    for file, fns in ADMIN_ONLY.items():
        for fn_name in sorted(fns) if fns else [None]:
            if (file, fn_name) not in used_admin:
                what = f"fn {fn_name} in {file}" if fn_name else file
                problems.append(
                    f"ADMIN_ONLY lists {what}, but no AWS call is made there any more: remove the entry from "
                    f"tests/iam/check_policy.py"
                )
    return req, problems


# --------------------------------------------------------------------------------------------
# Terraform


def unquote(v):
    """python-hcl2 keeps the quotes of string literals (and `__is_block__` markers): normalize."""
    if isinstance(v, str):
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            return v[1:-1]
        return v
    if isinstance(v, list):
        return [unquote(x) for x in v]
    if isinstance(v, dict):
        return {unquote(k): unquote(x) for k, x in v.items() if k != "__is_block__"}
    return v


@functools.lru_cache(maxsize=256)
def parse_hcl(text: str) -> dict:
    return unquote(hcl2.loads(text))


def load_terraform(tf_dir: Path) -> dict[str, list]:
    if hcl2 is None:
        raise CheckError("python-hcl2 is not installed (pip install 'python-hcl2>=8.1,<9')")
    files = sorted(tf_dir.glob("*.tf"))
    if not files:
        raise CheckError(f"no *.tf files in {tf_dir}")
    merged: dict[str, list] = {}
    for f in files:
        try:
            doc = parse_hcl(f.read_text())
        except Exception as e:  # the parser's own exception types vary by version
            raise CheckError(f"{f}: not valid HCL: {e}") from e
        for k, v in doc.items():
            merged.setdefault(k, []).extend(v)
    return merged


def blocks(doc: dict[str, list], kind: str, type_: str) -> dict[str, dict]:
    """`resource "type" "name" {}` / `data "type" "name" {}` bodies by name."""
    out = {}
    for entry in doc.get(kind, []):
        for t, named in entry.items():
            if t == type_:
                out.update(named)
    return out


def as_list(v) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


@dataclass
class Statement:
    document: str
    sid: str
    effect: str
    actions: list[str]
    resources: list[str]
    conditions: list[dict]
    other: dict
    #: `for_each` of a `dynamic "statement"` (what `statement.value` in its resources refers to).
    for_each: str = ""

    def label(self) -> str:
        return f"data.aws_iam_policy_document.{self.document} statement {self.sid or '(no sid)'}"


def statements(name: str, body: dict) -> list[Statement]:
    raw = [(s, "") for s in as_list(body.get("statement"))]
    for dyn in as_list(body.get("dynamic")):
        for label, d in dyn.items():
            if label == "statement":
                raw.extend((c, str(d.get("for_each", ""))) for c in as_list(d.get("content")))
    out = []
    for s, for_each in raw:
        out.append(
            Statement(
                document=name,
                sid=s.get("sid", ""),
                effect=s.get("effect", "Allow"),
                actions=[str(a) for a in as_list(s.get("actions"))],
                resources=[str(r) for r in as_list(s.get("resources"))],
                conditions=as_list(s.get("condition")),
                other={k: v for k, v in s.items() if k in ("not_actions", "not_resources", "principals")},
                for_each=for_each,
            )
        )
    return out


def ref_doc(expr: str) -> str | None:
    m = re.search(r"data\.aws_iam_policy_document\.(\w+)\.json", expr or "")
    return m.group(1) if m else None


def task_documents(doc: dict[str, list]) -> tuple[list[str], list[str]]:
    problems = []
    roles = blocks(doc, "resource", "aws_iam_role")
    if TASK_ROLE not in roles:
        return [], [f'terraform has no resource "aws_iam_role" "{TASK_ROLE}" (the controller\'s task role)']
    if roles[TASK_ROLE].get("inline_policy") or roles[TASK_ROLE].get("managed_policy_arns"):
        problems.append(f"aws_iam_role.{TASK_ROLE}: use aws_iam_role_policy resources, not inline_policy/managed_policy_arns")
    names = []
    for rname, body in blocks(doc, "resource", "aws_iam_role_policy").items():
        if re.search(rf"aws_iam_role\.{TASK_ROLE}\.", str(body.get("role", ""))):
            d = ref_doc(str(body.get("policy", "")))
            if d is None:
                problems.append(
                    f"aws_iam_role_policy.{rname} on the task role must take its policy from a "
                    f"data.aws_iam_policy_document (so it can be checked)"
                )
            else:
                names.append(d)
    for rname, body in blocks(doc, "resource", "aws_iam_role_policy_attachment").items():
        if re.search(rf"aws_iam_role\.{TASK_ROLE}\.", str(body.get("role", ""))):
            problems.append(
                f"aws_iam_role_policy_attachment.{rname} attaches a managed policy to the task role: "
                f"managed policies grant more than the code calls; grant inline instead"
            )
    if not names:
        problems.append(f"no aws_iam_role_policy attaches a policy document to aws_iam_role.{TASK_ROLE}")
    return names, problems


def is_star_resource(r: str) -> bool:
    r = r.strip()
    return r == "*" or bool(re.fullmatch(r"arn:[^:]*:[^:]*:[^:]*:[^:]*:\*", r)) or r in ("arn:aws:s3:::*",)


def lint(stmt: Statement) -> list[str]:
    problems = []
    if stmt.other.get("not_actions") or stmt.other.get("not_resources"):
        problems.append(f"{stmt.label()}: not_actions/not_resources grant everything else; list what is meant")
    if stmt.effect != "Allow":
        return problems
    for a in stmt.actions:
        if "*" in a:
            problems.append(f"{stmt.label()}: wildcard action {a!r}: grant the exact actions the code calls")
    for r in stmt.resources:
        if is_star_resource(r):
            bad = [a for a in stmt.actions if a not in STAR_ONLY]
            if bad:
                problems.append(
                    f"{stmt.label()}: resource {r!r} for {', '.join(bad)}: these actions support resource ARNs; name them"
                )
    return problems


def written_attributes(root: Path, rel: str, fns: tuple[str, ...]) -> tuple[set[str], list[str]]:
    """Attribute names inserted into item maps inside the functions `fns` of `rel`."""
    path = root / rel
    if not path.exists():
        return set(), [f"ATTRIBUTE_LISTS names {rel}, which does not exist: update tests/iam/check_policy.py"]
    text = path.read_text()
    code, _ = clean(text)
    found: set[str] = set()
    problems = []
    ranges = {name: (a, b) for a, b, name in functions(code)}
    for fn_name in fns:
        if fn_name not in ranges:
            problems.append(f"ATTRIBUTE_LISTS names fn {fn_name} in {rel}, which no longer exists: update tests/iam/check_policy.py")
            continue
        a, b = ranges[fn_name]
        found.update(re.findall(r'\.insert\(\s*"([A-Za-z_][A-Za-z0-9_]*)"\s*\.to_string\(\)', text[a:b]))
    return found, problems


def check_attribute_lists(root: Path, doc: dict[str, list]) -> list[str]:
    problems = []
    local_values: dict = {}
    for entry in doc.get("locals", []):
        local_values.update(entry)
    for name, (rel, fns, never) in ATTRIBUTE_LISTS.items():
        code_attrs, p = written_attributes(root, rel, fns)
        problems += p
        if p:
            continue
        listed = local_values.get(name)
        if not isinstance(listed, list):
            problems.append(f"local.{name} (the attributes people may write) is missing or not a literal list in terraform/")
            continue
        listed_set = {str(x) for x in listed}
        for a in sorted(listed_set & never):
            problems.append(f"local.{name} lets people write attribute {a!r}, which only the controller may write")
        for a in sorted(code_attrs - never - listed_set):
            problems.append(
                f"local.{name} lacks attribute {a!r}, which {rel} ({', '.join(fns)}) writes: people's writes would be denied"
            )
        for a in sorted(listed_set - code_attrs - never):
            problems.append(f"local.{name} allows attribute {a!r}, which {rel} ({', '.join(fns)}) never writes: remove it")
    return problems


def check(root: Path) -> list[str]:
    """All problems found (empty: the policy is exact)."""
    ops = sdk_crates(root)
    scan = scan_sources(root, ops)
    problems = list(scan.errors)
    req, p = required_actions(scan)
    problems += p
    doc = load_terraform(root / "terraform")
    docs = blocks(doc, "data", "aws_iam_policy_document")
    names, p = task_documents(doc)
    problems += p
    for n in names:
        if n not in docs:
            problems.append(f"data.aws_iam_policy_document.{n} (the task role's policy) is not defined")
    task_stmts = [s for n in names if n in docs for s in statements(n, docs[n])]
    allow = [s for s in task_stmts if s.effect == "Allow"]
    granted: dict[str, list[Statement]] = {}
    for s in allow:
        for a in s.actions:
            granted.setdefault(a, []).append(s)

    # 1. Every action the controller's code calls is granted, on resources of its service.
    for action, sites in sorted(req.task.items()):
        if action not in granted:
            problems.append(
                f"MISSING: the task role does not grant {action}, which the code calls at:\n      "
                + "\n      ".join(sites)
                + "\n    grant it in terraform/iam_task.tf (data.aws_iam_policy_document.task) on the resource it is called on;"
                + " if only an administrator command (like `sqlctl aws bootstrap`) makes the call, list its function in"
                + " ADMIN_ONLY in tests/iam/check_policy.py instead"
            )
            continue
        svc = action.split(":")[0]
        refs = RESOURCE_REFS.get(svc)
        if refs is None:
            problems.append(
                f"{action}: no resource rule for service {svc!r} in tests/iam/check_policy.py RESOURCE_REFS: add one "
                f"naming the Terraform resources its grants must reference"
            )
            continue
        for s in granted[action]:
            if action in STAR_ONLY:
                continue
            for r in s.resources:
                # `statement.value` in a dynamic statement stands for its for_each's elements.
                names = r + (" " + s.for_each if "statement." in r else "")
                if not any(re.search(x, names) for x in refs):
                    problems.append(
                        f"{s.label()}: {action} on {r!r}, which is not one of this module's {svc} resources "
                        f"(expected a reference matching {' or '.join(refs)})"
                    )
    if req.query_indexes:
        if not any("/index/" in r for s in granted.get("dynamodb:Query", []) for r in s.resources):
            problems.append(
                "MISSING: the code queries DynamoDB indexes (.index_name(...)) but dynamodb:Query is not granted on "
                "any index ARN (<table arn>/index/<name>)"
            )

    # 2. Nothing beyond what is called or implied by what is called.
    implied: dict[str, str] = {}
    for trigger, extra in IMPLIED.items():
        if trigger in req.task:
            implied.update(extra)
    for action in sorted(granted):
        if action in req.task or action in implied:
            continue
        why = ""
        if action in req.admin:
            why = " (only administrator commands call it: " + "; ".join(req.admin[action][:3]) + ")"
        problems.append(
            f"EXTRA: the task role grants {action}, which the controller's code does not call{why}: "
            f"remove it from {', '.join(sorted({s.label() for s in granted[action]}))}"
        )

    # 3. Wildcards, everywhere.
    for n, body in sorted(docs.items()):
        for s in statements(n, body):
            problems += lint(s)
            if n in PEOPLE_DOCUMENTS and s.effect == "Allow" and any(a.startswith("dynamodb:") for a in s.actions):
                keys = [c for c in s.conditions if c.get("variable") == "dynamodb:LeadingKeys"]
                if not keys or not all(str(c.get("test", "")).startswith("ForAllValues:") for c in keys):
                    problems.append(
                        f"{s.label()}: DynamoDB access for people must be limited with a "
                        f"ForAllValues dynamodb:LeadingKeys condition"
                    )
            if n in PEOPLE_DOCUMENTS and s.effect == "Allow":
                problems += people_writes_no_decisions(s, doc)
    for n in PEOPLE_DOCUMENTS:
        if n not in docs:
            problems.append(f"data.aws_iam_policy_document.{n} is missing (the {n} role's policy)")
    problems += check_attribute_lists(root, doc)
    return problems


#: DynamoDB actions that write items (a person's grant of one must never reach a DEC# partition).
DYNAMODB_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
}


def _expand_locals(text: str, doc: dict) -> str:
    """`text` with each `local.NAME` it names followed by that local's value (one level deep)."""
    values = {}
    for block in doc.get("locals", []):
        values.update(block)
    out = text
    for name in re.findall(r"local\.([A-Za-z0-9_]+)", text):
        if name in values:
            out += " " + str(values[name])
    return out


def people_writes_no_decisions(s: Statement, doc: dict) -> list[str]:
    """Only the controller writes decision records: a person's DynamoDB write must be limited to
    partition keys that cannot be a decision's (`DEC#<uid>`)."""
    writes = [a for a in s.actions if a in DYNAMODB_WRITES or a in ("dynamodb:*", "*")]
    if not writes:
        return []
    keys = [c for c in s.conditions if c.get("variable") == "dynamodb:LeadingKeys"]
    patterns = " ".join(_expand_locals(str(c.get("values", "")), doc) for c in keys)
    # A pattern that can match DEC#...: one naming DEC#, or one starting with a wildcard.
    if not keys or "DEC#" in patterns or re.search(r"""(^|[\s\[\]'",])[*?]""", patterns):
        return [
            f"{s.label()}: grants {', '.join(writes)} on partitions that include decision records (DEC#): "
            f"only the controller writes decisions (people send them over SQS); limit LeadingKeys to request keys"
        ]
    return []


def summary(root: Path) -> str:
    ops = sdk_crates(root)
    scan = scan_sources(root, ops)
    req, _ = required_actions(scan)
    lines = [f"controller actions derived from the code ({len(req.task)}):"]
    lines += [f"  {a:<36} {len(s)} call site(s), e.g. {s[0]}" for a, s in sorted(req.task.items())]
    lines.append(f"administrator-only actions ({len(req.admin)}): " + ", ".join(sorted(req.admin)))
    if req.free:
        lines.append("calls that need no permission: " + "; ".join(req.free))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Self-test: the check must fail for each kind of drift.


def _copy_tree(root: Path, dst: Path) -> None:
    shutil.copytree(root / "src", dst / "src")
    shutil.copytree(root / "terraform", dst / "terraform", ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    shutil.copy(root / "Cargo.lock", dst / "Cargo.lock")


def self_test(root: Path) -> list[str]:
    failures = []
    base = check(root)
    if base:
        return ["the unmodified tree must pass before the self-test means anything"]

    def case(name: str, mutate, expect: str | None) -> None:
        with tempfile.TemporaryDirectory(prefix="sqlctl-iam-") as d:
            tmp = Path(d)
            _copy_tree(root, tmp)
            mutate(tmp)
            got = check(tmp)
            if expect is None:
                if got:
                    failures.append(f"{name}: expected to pass, got:\n  " + "\n  ".join(got))
                else:
                    print(f"self-test ok: {name}")
            elif not any(expect in p for p in got):
                failures.append(f"{name}: expected a problem mentioning {expect!r}, got: {got or 'none'}")
            else:
                print(f"self-test ok: {name}")

    def append(rel: str, text: str):
        def f(tmp: Path) -> None:
            p = tmp / rel
            p.write_text(p.read_text() + text)

        return f

    def replace(rel: str, old: str, new: str):
        def f(tmp: Path) -> None:
            p = tmp / rel
            t = p.read_text()
            assert old in t, f"{rel} no longer contains {old!r}"
            p.write_text(t.replace(old, new, 1))

        return f

    case(
        "a new SQS call in the approval code",
        append("src/approval/sqs.rs", "\npub async fn probe(c: &Client) {\n    let _ = c.purge_queue().send().await;\n}\n"),
        "MISSING: the task role does not grant sqs:PurgeQueue",
    )
    case(
        "a new S3 call in a file that builds its client with aws::s3()",
        append("src/aws.rs", "\npub async fn probe(c: &SdkConfig) {\n    let _ = s3(c).delete_bucket().send().await;\n}\n"),
        "MISSING: the task role does not grant s3:DeleteBucket",
    )
    case(
        "a DynamoDB index query without an index grant",
        replace(
            "terraform/iam_task.tf",
            '      "${aws_dynamodb_table.this.arn}/index/active",\n'
            '      "${aws_dynamodb_table.this.arn}/index/list",\n'
            '      "${aws_dynamodb_table.this.arn}/index/changes",\n',
            "",
        ),
        "not granted on any index ARN",
    )
    case(
        "people allowed to write decision records again",
        replace(
            "terraform/iam_people.tf",
            '  statement {\n    sid       = "SendDecisions"',
            '  statement {\n    sid       = "WriteDecisions"\n    actions   = ["dynamodb:PutItem"]\n'
            '    resources = [aws_dynamodb_table.this.arn]\n\n    condition {\n      test     = "ForAllValues:StringLike"\n'
            '      variable = "dynamodb:LeadingKeys"\n      values   = ["DEC#*"]\n    }\n  }\n\n'
            '  statement {\n    sid       = "SendDecisions"',
        ),
        "only the controller writes decisions",
    )
    case(
        "a requester write whose keys could reach decisions",
        replace("terraform/iam_people.tf", 'requester_request_keys = [for ns in var.requester_namespaces : "REQ#${ns}/*"]', 'requester_request_keys = ["*"]'),
        "only the controller writes decisions",
    )
    case(
        "requesters allowed to write a status",
        replace("terraform/iam_people.tf", 'request_create_attributes = ["ak",', 'request_create_attributes = ["st", "ak",'),
        "only the controller may write",
    )
    case(
        "people's DynamoDB access without LeadingKeys",
        replace(
            "terraform/iam_people.tf",
            'variable = "dynamodb:LeadingKeys"\n      values   = concat(local.approver_request_keys, ["POLICY"])',
            'variable = "dynamodb:Attributes"\n      values   = concat(local.approver_request_keys, ["POLICY"])',
        ),
        "must be limited with a ForAllValues dynamodb:LeadingKeys condition",
    )
    case(
        "an operation-like call in a file that names no SDK crate",
        append("src/guard.rs", "\nfn probe(x: &Probe) {\n    let _ = x.get_item();\n}\n"),
        "cannot be attributed",
    )
    case(
        "the same call marked as not an AWS call",
        append("src/guard.rs", f"\nfn probe(x: &Probe) {{\n    let _ = x.get_item(); // {NOT_AWS_MARK}\n}}\n"),
        None,
    )
    case(
        "a call inside #[cfg(test)] needs no grant",
        append(
            "src/approval/sqs.rs",
            "\n#[cfg(test)]\nmod probe_tests {\n    async fn p(c: &aws_sdk_sqs::Client) {\n        let _ = c.purge_queue();\n    }\n}\n",
        ),
        None,
    )
    case(
        "a call in a comment or string needs no grant",
        append("src/approval/sqs.rs", '\n// c.purge_queue()\nconst _PROBE: &str = "c.purge_queue()";\n'),
        None,
    )
    case(
        "an ambiguous operation name",
        append(
            "src/store/dynamodb/mod.rs",
            "\nasync fn probe(x: &aws_sdk_glue::Client) {\n    let _ = x.delete_table();\n}\n",
        ),
        "does not say which",
    )
    case(
        "a grant the code does not need",
        replace("terraform/iam_task.tf", '"sqs:DeleteMessage",', '"sqs:DeleteMessage",\n      "sqs:PurgeQueue",'),
        "EXTRA: the task role grants sqs:PurgeQueue",
    )
    case(
        "a wildcard action",
        replace("terraform/iam_task.tf", '"sqs:DeleteMessage",', '"sqs:*",'),
        "wildcard action",
    )
    case(
        "a * resource",
        replace("terraform/iam_task.tf", "resources = [aws_athena_workgroup.this.arn]", 'resources = ["*"]'),
        "resource '*'",
    )
    case(
        "a bootstrap-only action granted to the task role",
        replace("terraform/iam_task.tf", '"sqs:DeleteMessage",', '"sqs:DeleteMessage",\n      "sqs:CreateQueue",'),
        "only administrator commands call it",
    )
    case(
        "a removed grant",
        replace("terraform/iam_task.tf", '"dynamodb:ConditionCheckItem",', ""),
        "MISSING: the task role does not grant dynamodb:ConditionCheckItem",
    )
    case(
        "an ADMIN_ONLY entry that went stale",
        replace("src/catalog/glue.rs", "pub async fn register_tables(", "pub async fn register_tables_renamed("),
        "ADMIN_ONLY lists fn register_tables",
    )
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="the repository root")
    ap.add_argument("--self-test", action="store_true", help="also prove the check fails on drift")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the derived actions")
    args = ap.parse_args()
    try:
        problems = check(args.root)
        if args.verbose or problems:
            print(summary(args.root))
        if problems:
            print(f"\nIAM check FAILED: {len(problems)} problem(s) with the task role policy in terraform/:", file=sys.stderr)
            for p in problems:
                print(f"  - {p}", file=sys.stderr)
            return 1
        print("IAM check passed: the task role grants exactly the AWS actions the controller's code calls")
        if args.self_test:
            failures = self_test(args.root)
            if failures:
                print("IAM check self-test FAILED:", file=sys.stderr)
                for f in failures:
                    print(f"  - {f}", file=sys.stderr)
                return 1
            print("IAM check self-test passed")
        return 0
    except CheckError as e:
        print(f"IAM check could not run: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
