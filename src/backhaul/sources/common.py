"""Helpers shared by the warehouse sources: config base, lazy drivers, SQL wrapping, Arrow.

Each source module stays small: it declares its config model, connects with its driver and
picks the fastest way its driver has to hand out Arrow. What every source needs the same way
lives here.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any
from typing import ClassVar
from typing import Generic
from typing import Self
from typing import TypeVar
from typing import get_args

import duckdb
import pyarrow as pa
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import model_validator

from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import SourceError


class SourceConfig(BaseModel):
    """Base of every warehouse source config. Subclasses add ``type: Literal[...]``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: str
    description: str | None = None
    connect_timeout: float = Field(10, gt=0, description="Seconds to wait for a connection.")

    def driver_options(self, *keys: str) -> dict[str, Any]:
        """The values of ``keys``, named as in the source file (``schema``, not ``schema_``):
        the keywords of a driver that calls them what the file does.

        Raises:
            KeyError: A key the config does not have.
        """
        values = self.model_dump(by_alias=True)
        return {key: values[key] for key in keys}


class HostSourceConfig(SourceConfig):
    """A warehouse server reached at ``host:port`` as ``user``.

    Subclasses set the ``port`` default and add the credentials and namespaces their
    driver takes.
    """

    host: str
    port: int
    user: str


class ServerSourceConfig(SourceConfig):
    """A database server, given by one ``url`` or by its fields, so neither can hide the other.

    Subclasses set ``example_url`` (the URL form, shown when neither is given), their
    ``port`` default and the ``url`` description.
    """

    example_url: ClassVar[str]
    url: str | None = None
    host: str | None = None
    port: int
    user: str | None = None
    password: str | None = None
    database: str | None = None

    @model_validator(mode="after")
    def _url_or_host(self) -> Self:
        if self.url and (self.host or self.user or self.password or self.database):
            raise ValueError("give either `url` or host/user/password/database, not both")
        if not self.url and not self.host:
            raise ValueError(f"give `url` ({self.example_url}) or `host`")
        return self


def import_driver(module: str, package: str, extra: str, kind: str) -> ModuleType:
    """Import a warehouse driver on first use.

    Raises:
        ConfigError: The driver is not installed; says which package (or extra) to install.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"the {kind} source needs the `{package}` package: run `pip install {package}` "
            f"(or install backhaul with the `{extra}` extra)"
        ) from None


def strip_sql(sql: str) -> str:
    """Model SQL ready to nest in a subquery: no blanks at its end, and no semicolons at
    its end, with or without comments after them (``SELECT ...; -- done``). Blank lines
    at its start stay, so the warehouse's line numbers are the file's."""
    text = sql.rstrip()
    if ";" not in text:
        return text
    end = _end_before_semicolons(text)
    if end is None:  # not SQL the tokenizer reads: only the semicolons at the very end go
        while text.endswith(";"):
            text = text[:-1].rstrip()
        return text
    return text[:end].rstrip()


def holds_query(sql: str) -> bool:
    """Whether ``sql`` holds anything but blanks, comments and semicolons (SQL sqlglot's
    tokenizer cannot read counts as a query, for the warehouse to judge)."""
    if not sql.strip():
        return False
    tokens = _tokens(sql)
    return tokens is None or any(not _is_semicolon(token) for token in tokens)


def _end_before_semicolons(text: str) -> int | None:
    """Where ``text`` ends once the semicolons after its last token, and the comments among
    them, are left out. None when it cannot read ``text``."""
    tokens = _tokens(text)
    if tokens is None:
        return None
    if not tokens or not _is_semicolon(tokens[-1]):
        return len(text)
    for token in reversed(tokens):
        if not _is_semicolon(token):
            return int(token.end) + 1  # the token's last character is at .end
    return 0  # nothing but semicolons


def _tokens(text: str) -> list[Any] | None:
    """``text`` read with sqlglot's tokenizer, so a ``;`` or ``--`` inside a string, a quoted
    name or a comment is not taken for one (comments are not tokens); None when it cannot
    read it."""
    from sqlglot.errors import SqlglotError
    from sqlglot.tokens import Tokenizer

    try:
        return list(Tokenizer().tokenize(text))
    except SqlglotError:
        return None


def _is_semicolon(token: Any) -> bool:
    from sqlglot import TokenType

    return bool(token.token_type is TokenType.SEMICOLON)


_PLACEHOLDER = "backhaul_model_placeholder"


def limit_zero(sql: str, dialect: str) -> str:
    """``sql`` wrapped so the warehouse only plans it: its columns, no rows.

    The wrapper is generated by sqlglot for ``dialect`` (``LIMIT 0``, ``TOP 0``...). The
    model's first line stays on line 1, so the warehouse's line numbers match the file.
    """
    import sqlglot

    template = sqlglot.transpile(
        f"SELECT * FROM {_PLACEHOLDER} AS backhaul_q LIMIT 0", read="duckdb", write=dialect
    )[0]
    before, _, after = template.partition(_PLACEHOLDER)
    return f"{before}({strip_sql(sql)}\n){after}"


def one_line(text: str, secrets: Iterable[str] = ()) -> str:
    """The first non-empty line of a driver message, with secret values masked."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return line or "unknown error"


_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def source_error(
    kind: str, where: str, exc: BaseException, hint: str, secrets: Sequence[str]
) -> SourceError:
    """One-line :class:`SourceError` naming the source and what to fix."""
    message = one_line(str(exc) or type(exc).__name__, secrets)
    return SourceError(f"{kind} source at {where}: {message}; {hint}")


# --- Arrow from DB-API cursors ---------------------------------------------------------


def rows_to_batch(
    rows: Sequence[Sequence[Any]], schema: pa.Schema, convert: Sequence[Callable[[Any], Any] | None]
) -> pa.RecordBatch:
    """Column-wise Arrow batch from row tuples (one Python pass per column)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for values, field, fn in zip(columns, schema, convert, strict=True):
        data = [None if v is None else fn(v) for v in values] if fn is not None else values
        arrays.append(pa.array(data, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def infer_schema(
    names: Sequence[str], types: Sequence[pa.DataType | None], rows: Sequence[Sequence[Any]]
) -> pa.Schema:
    """Fill the unknown types (``None``) from the values of the first rows."""
    fields = []
    for i, (name, type_) in enumerate(zip(names, types, strict=True)):
        if type_ is None:
            seen = pa.array([row[i] for row in rows]).type if rows else pa.null()
            # A column with no value yet is text: the safest type for later values.
            type_ = pa.string() if pa.types.is_null(seen) else seen
        fields.append(pa.field(name, type_))
    return pa.schema(fields)


def dbapi_reader(
    fetch: Callable[[int], Sequence[Sequence[Any]]],
    names: Sequence[str],
    types: Sequence[pa.DataType | None],
    batch_size: int,
    *,
    convert: Sequence[Callable[[Any], Any] | None] | None = None,
    on_error: Callable[[BaseException], BaseException],
    finish: Callable[[], None],
) -> pa.RecordBatchReader:
    """Stream a DB-API result as Arrow batches of at most ``batch_size`` rows.

    ``fetch(n)`` is the cursor's ``fetchmany``: with a server-side cursor only one batch of
    rows is held in Python at a time. ``finish`` runs once when the stream ends or fails.
    """
    fns = list(convert) if convert is not None else [None] * len(names)
    try:
        first = fetch(batch_size)
        schema = infer_schema(names, types, first)
    except Exception as exc:
        finish()
        raise on_error(exc) from None

    def batches() -> Iterator[pa.RecordBatch]:
        rows = first
        try:
            while rows:
                yield rows_to_batch(rows, schema, fns)
                if len(rows) < batch_size:
                    break
                rows = fetch(batch_size)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceError(
                f"a column changes type within the result ({one_line(str(exc))}); "
                "cast it to one type in the model SQL"
            ) from None

    return _guarded_reader(schema, batches(), on_error=on_error, finish=finish)


def tables_reader(
    tables: Iterator[pa.Table | pa.RecordBatch],
    empty_schema: Callable[[], pa.Schema],
    batch_size: int,
    *,
    on_error: Callable[[BaseException], BaseException],
    finish: Callable[[], None],
) -> pa.RecordBatchReader:
    """Arrow batches from a driver that hands out Arrow tables or batches of any size.

    The first table is fetched eagerly for the schema (``empty_schema`` when there is none),
    so a failing query raises here, not in the middle of planning.
    """
    try:
        first = next(tables, None)
        schema = first.schema if first is not None else empty_schema()
    except Exception as exc:
        finish()
        raise on_error(exc) from None

    def batches() -> Iterator[pa.RecordBatch]:
        item = first
        while item is not None:
            parts = item.to_batches(batch_size) if isinstance(item, pa.Table) else [item]
            for part in parts:
                for start in range(0, part.num_rows, batch_size):
                    yield part.slice(start, batch_size).cast(schema)
            item = next(tables, None)

    return _guarded_reader(schema, batches(), on_error=on_error, finish=finish)


def _guarded_reader(
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    *,
    on_error: Callable[[BaseException], BaseException],
    finish: Callable[[], None],
) -> pa.RecordBatchReader:
    """A reader over ``batches`` that ends the query however the stream ends.

    A driver error met while streaming becomes the source's own error (``on_error``), a
    :class:`SourceError` passes as it is, and ``finish`` runs once, when the stream ends or
    fails.
    """

    def guarded() -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except SourceError:
            raise
        except Exception as exc:
            raise on_error(exc) from None
        finally:
            finish()

    return pa.RecordBatchReader.from_batches(schema, guarded())


class StreamedSource:
    """A warehouse whose rows are streamed out: DuckDB cannot read it in place."""

    def attach(self, con: duckdb.DuckDBPyConnection, alias: str) -> bool:
        """Streamed, never attached."""
        return False


ServerConfigT = TypeVar("ServerConfigT", bound=ServerSourceConfig)


class ServerSource(StreamedSource, Generic[ServerConfigT]):
    """A database server, opened with the connection parameters its config resolves to.

    The parameters are resolved once, when the source is created, so a bad ``url`` fails
    before anything connects; the password among them is masked in every message.
    Subclasses implement :meth:`_where` from ``self._params``.
    """

    def __init__(self, config: ServerConfigT, params: dict[str, Any]) -> None:
        self.config = config
        self._params = params
        self._password = str(params.get("password") or "")
        self.where = self._where()
        self._conn: Any = None

    def _where(self) -> str:
        """``host:port/database``, for messages (never holds a secret)."""
        raise NotImplementedError


ConfigT = TypeVar("ConfigT", bound=SourceConfig)


class DbApiSource(StreamedSource, Generic[ConfigT]):
    """A warehouse reached through a DB-API driver that is imported on first use.

    Subclasses name their config model as the type argument (``DbApiSource[MyConfig]``),
    set ``driver`` (the module to import) and ``package`` (what pip installs), and
    implement :meth:`_open`; they override :meth:`stream` when the driver hands out Arrow
    itself. ``config_model`` is the type argument and ``kind`` its ``type`` literal, so the
    source file's ``type`` is written once; ``dialect`` (sqlglot) and ``extra`` default to
    ``kind``. A subclass may set any of them itself.
    """

    config_model: ClassVar[type[SourceConfig]]
    kind: ClassVar[str] = ""
    dialect: ClassVar[str] = ""
    driver: ClassVar[str] = ""
    package: ClassVar[str] = ""
    extra: ClassVar[str] = ""
    connect_hint: ClassVar[str] = "check the host, credentials and network access"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_model" not in vars(cls):
            config_model = _config_argument(cls)
            if config_model is None:
                return  # a generic base, or a subclass that keeps its parent's model
            cls.config_model = config_model
        cls.kind = cls.kind or _type_literal(cls.config_model)
        cls.dialect = cls.dialect or cls.kind
        cls.extra = cls.extra or cls.kind

    def __init__(self, config: ConfigT, project_dir: Path) -> None:
        self.config = config
        self.project_dir = project_dir
        self.where = self._where()
        self._conn: Any = None

    # -- hooks ----------------------------------------------------------------------------
    def _where(self) -> str:
        """Where the warehouse is, for messages (never holds a secret)."""
        return self.kind

    def _secrets(self) -> list[str]:
        password = getattr(self.config, "password", None) or getattr(self.config, "token", None)
        return [str(password)] if password else []

    def _open(self, module: ModuleType) -> Any:
        raise NotImplementedError

    @staticmethod
    def _connect_with(module: ModuleType, options: dict[str, Any]) -> Any:
        """``module.connect`` with the options that are set (None means: driver default)."""
        return module.connect(**{k: v for k, v in options.items() if v is not None})

    def _arrow_type(self, desc: Sequence[Any]) -> pa.DataType | None:
        return None

    # -- shared behaviour -----------------------------------------------------------------
    def _module(self) -> ModuleType:
        return import_driver(self.driver, self.package, self.extra, self.kind)

    def _connect(self) -> Any:
        if self._conn is None:
            module = self._module()
            try:
                self._conn = self._open(module)
            except BackhaulError:
                raise
            except Exception as exc:
                raise self._connect_error(exc) from None
        return self._conn

    def _connect_error(self, exc: BaseException) -> SourceError:
        message = one_line(str(exc) or type(exc).__name__, self._secrets())
        return SourceError(
            f"cannot connect to {self.kind} source at {self.where}: {message}; {self.connect_hint}"
        )

    def _query_error(self, exc: BaseException) -> SourceError:
        return SourceError(one_line(str(exc) or type(exc).__name__, self._secrets()))

    def columns(self, sql: str) -> dict[str, str]:
        """Column names and warehouse types of ``sql``, planned with ``LIMIT 0``."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            try:
                cur.execute(limit_zero(sql, self.dialect))
                return {str(d[0]): str(d[1]) for d in cur.description or []}
            finally:
                cur.close()
        except Exception as exc:
            raise self._query_error(exc) from None

    def _execute(self, sql: str) -> Any:
        """A cursor on which the model's ``sql`` has been run; driver errors become
        :class:`SourceError` with secrets masked."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(strip_sql(sql))
        except Exception as exc:
            raise self._query_error(exc) from None
        return cur

    def stream(self, sql: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Stream the rows of ``sql`` with the cursor's ``fetchmany``."""
        cur = self._execute(sql)
        desc = cur.description or []
        return dbapi_reader(
            cur.fetchmany,
            [str(d[0]) for d in desc],
            [self._arrow_type(d) for d in desc],
            batch_size,
            on_error=self._query_error,
            finish=cur.close,
        )

    def run_statement(self, sql: str) -> None:
        """Run one statement that returns nothing worth reading (a sync's hooks).

        Driver errors are raised as they are; the caller names the hook.
        """
        cur = self._connect().cursor()
        try:
            cur.execute(sql)
        finally:
            cur.close()

    def check(self) -> None:
        """Connect and run a trivial query."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()
            cur.close()
        except Exception as exc:
            raise self._connect_error(exc) from None

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.close()


def _config_argument(cls: type) -> type[SourceConfig] | None:
    """The config model ``cls`` names as its type argument (``DbApiSource[MyConfig]``)."""
    for base in vars(cls).get("__orig_bases__", ()):
        for arg in get_args(base):
            if isinstance(arg, type) and issubclass(arg, SourceConfig):
                return arg
    return None


def _type_literal(config_model: type[SourceConfig]) -> str:
    """The value of a config model's ``type: Literal[...]``."""
    (kind,) = get_args(config_model.model_fields["type"].annotation)
    return str(kind)


__all__ = [
    "DbApiSource",
    "HostSourceConfig",
    "ServerSource",
    "ServerSourceConfig",
    "SourceConfig",
    "StreamedSource",
    "dbapi_reader",
    "holds_query",
    "import_driver",
    "infer_schema",
    "limit_zero",
    "mask_url",
    "one_line",
    "rows_to_batch",
    "source_error",
    "strip_sql",
    "tables_reader",
]
