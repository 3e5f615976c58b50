"""Model lifecycle: the one owner of loading, reloading and unloading, start-up and shutdown included.

Start-up, a load call and the poller all go through `_refresh`: scan one model folder, apply its
version policy, and for every selected version whose files changed since it was built, have
`service.loader` build it (ONNX file checked in a child process, session warmed, batcher started),
and only then swap it into the registry's table. The version it replaces leaves the table at once (new requests go to
the new one) and is retired afterwards: requests that already resolved it keep its batcher open until
they are queued, and its queue drains before its session is dropped. A version that fails to load
never replaces one that serves: a changed version keeps its previous files serving, and when a new
version fails, older versions outside the policy keep serving in its place. Failures are reported
with their reason by `index()` and by the load call itself.

Change detection compares file sizes and modification times (no hashing of large files); polling
the repository with it is optional (`repository_poll_interval_s`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from modelrepo.layout import CONFIG_FILE, is_model_dir, model_names, versions
from service.errors import AxonError, LoadFailed, ModelNotFound, RepositoryMissing
from service.loader import Loader
from service.naming import resolve_inside, validate_model_name
from service.registry import ModelRegistry, ModelState, ModelVersion, newest_first
from service.repository import ModelDescriptor, discover_model
from service.settings import Settings

log = logging.getLogger("axon.lifecycle")

# The reason a version being built is listed with, in the repository index and in /v1/models.
LOADING_REASON = "a new version is being validated and warmed up"
RELOADING_REASON = "new files are being validated and warmed up; the previous files serve meanwhile"
STANDING_IN_REASON = "outside the version policy; serving until a newer version loads"

Fingerprint = tuple[object, ...]
"""Sizes and modification times of the files a version (or a whole model folder) is built from."""


def _stat(path: Path) -> tuple[object, ...]:
    try:
        st = path.stat()
    except OSError:
        return (path.name, None)
    return (path.name, st.st_size, st.st_mtime_ns)


def version_print(model_dir: Path, version: int | None) -> Fingerprint:
    """What a version is built from: the model's config.json and every file of its version folder."""
    top = _stat(model_dir / CONFIG_FILE)
    if version is None:
        return (top,)
    folder = model_dir / str(version)
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file())
    except OSError:
        files = []
    return (top, *(_stat(p) for p in files))


def model_print(model_dir: Path) -> Fingerprint:
    """What a whole model folder looks like: its config and every numeric version folder's files."""
    try:
        found = versions(model_dir)
    except OSError:
        return ()
    return (version_print(model_dir, None), *((v, version_print(model_dir, v)) for v in found))


class Lifecycle:
    """The one owner of loading: start-up, (re)load, unload, polling and shutdown, one model at a time."""

    def __init__(self, registry: ModelRegistry, loader: Loader, settings: Settings) -> None:
        self.registry = registry
        self.loader = loader
        self.settings = settings
        self.root = Path(settings.model_repository)
        self.unloaded: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._built: dict[tuple[str, int | None], Fingerprint] = {}
        self._seen: dict[str, Fingerprint] = {}
        self._failed: dict[tuple[str, int | None], str] = {}
        self._standing_in: set[tuple[str, int | None]] = set()
        self._loading: dict[str, set[int | None]] = {}
        self._poller: asyncio.Task[None] | None = None
        # Held while the start-up load runs: a load, unload or poll that arrives meanwhile waits for it
        # rather than racing it over the same version tables.
        self._startup = asyncio.Lock()

    def check_root(self) -> None:
        """Start-up check: the repository folder must exist (RepositoryMissing names where it was looked for)."""
        if self.root.is_dir():
            return
        where = self.root if self.root.is_absolute() else f"{self.root} (resolved from {Path.cwd()})"
        what = "is not a directory" if self.root.exists() else "does not exist"
        raise RepositoryMissing(
            f"the model repository {where} {what}: set AXON_MODEL_REPOSITORY to the folder holding "
            "<name>/config.json, or start from the directory that holds it"
        )

    async def load_all(self) -> None:
        """Start-up: load every model of the repository, one after the other, through the same path as `load`."""
        async with self._startup:
            plan = await asyncio.to_thread(self._look_all)
            # Every version goes in the table as loading first, so /v1/models shows the whole plan at once.
            for _, descriptors in plan.values():
                for d in descriptors:
                    self.registry.install(ModelVersion(d.name, d.version, d.path, d.config))
            for name, (whole, descriptors) in plan.items():
                async with self._locks.setdefault(name, asyncio.Lock()):
                    await self._refresh(name, self.root / name, whole, descriptors)

    def _look(self, folder: Path) -> tuple[Fingerprint, list[ModelDescriptor]]:
        # The print first: a change landing during discovery then differs from it, and the poller sees it.
        return model_print(folder), discover_model(folder)

    def _look_all(self) -> dict[str, tuple[Fingerprint, list[ModelDescriptor]]]:
        return {name: self._look(self.root / name) for name in model_names(self.root)}

    async def _model_lock(self, name: str) -> asyncio.Lock:
        """The lock serialising changes to one model, once any start-up load has finished."""
        async with self._startup:
            pass
        return self._locks.setdefault(name, asyncio.Lock())

    def model_dir(self, name: str) -> Path:
        """The folder of a model a client named: 400 for an unsafe name, 404 when it is not in the repository."""
        validate_model_name(name)
        folder = resolve_inside(self.root, name)
        if not is_model_dir(self.root, name):
            raise ModelNotFound(f"model '{name}' is not in the repository")
        return folder

    async def load(self, name: str) -> list[ModelVersion]:
        """(Re)load one model from disk; raises LoadFailed if a version its policy selects does not serve."""
        folder = await asyncio.to_thread(self.model_dir, name)
        async with await self._model_lock(name):
            self.unloaded.discard(name)
            entries = await self._refresh(name, folder, *await asyncio.to_thread(self._look, folder))
        problems = [f"{e.label}: {e.reason}" for e in entries if e.state is not ModelState.READY]
        problems += [f"model '{name}' version {v}: {why}" for (n, v), why in self._failed.items() if n == name]
        if problems:
            serving = [str(e.version) for e in self.registry.table(name).values() if e.state is ModelState.READY]
            still = (
                f"; serving version(s) {', '.join(sorted(serving, key=int, reverse=True))}"
                if serving
                else "; no version serves"
            )
            raise LoadFailed(f"failed to load {'; '.join(problems)}{still}")
        return entries

    async def _refresh(
        self, name: str, folder: Path, whole: Fingerprint, descriptors: list[ModelDescriptor]
    ) -> list[ModelVersion]:
        """Build what changed, swap it in, retire what it replaced (the model's lock is held)."""
        self._seen[name] = whole
        loading = self._loading.setdefault(name, set())
        retire: list[ModelVersion] = []
        for d in descriptors:
            fp = await asyncio.to_thread(version_print, folder, d.version)
            old = self.registry.table(name).get(d.version)
            serving = old is not None and old.state is ModelState.READY
            if serving and self._built.get((name, d.version)) == fp:
                # Unchanged (or restored): keep it, warm and queued as it is; it is wanted and sound again.
                self._failed.pop((name, d.version), None)
                self._standing_in.discard((name, d.version))
                continue
            loading.add(d.version)
            try:
                new = await self.loader.build(d)
            finally:
                loading.discard(d.version)
            if new.state is not ModelState.READY and serving:
                self._failed[(name, d.version)] = f"reload failed, previous files still serving: {new.reason}"
                log.error("%s: reload failed, previous files still serving: %s", new.label, new.reason)
                continue
            self.registry.install(new)  # the swap: requests resolving from now on get the new version
            self._forget(name, d.version)
            self._built[(name, d.version)] = fp
            if old is not None:
                retire.append(old)
        retire += self._outside_policy(name, {d.version for d in descriptors})
        # Drains run after the swap: in-flight requests on the old versions finish on them.
        await asyncio.gather(*(self.loader.retire(e) for e in retire))
        table = self.registry.table(name)
        return [table[d.version] for d in descriptors]

    def _outside_policy(self, name: str, wanted: set[int | None]) -> list[ModelVersion]:
        """Take out versions the policy no longer selects, except ready ones standing in for failed ones."""
        table = self.registry.table(name)
        missing = sum(1 for v in wanted if table[v].state is not ModelState.READY)
        out = []
        for version in sorted((v for v in table if v not in wanted), key=newest_first):
            entry = table[version]
            if entry.state is ModelState.READY and missing > 0:
                missing -= 1
                self._standing_in.add((name, version))
                continue
            self.registry.remove(name, version)
            out.append(entry)
            self._forget(name, version)
        return out

    def _forget(self, name: str, version: int | None) -> None:
        self._built.pop((name, version), None)
        self._failed.pop((name, version), None)
        self._standing_in.discard((name, version))

    async def unload(self, name: str) -> None:
        """Take a model out of service (queued requests finish); it stays listed in the index as unloaded."""
        validate_model_name(name)
        if name not in self.registry.names():
            await asyncio.to_thread(self.model_dir, name)  # 404 unless it is at least on disk
        async with await self._model_lock(name):
            self.unloaded.add(name)
            await self._take_out(name)

    async def _take_out(self, name: str) -> None:
        """Remove every version of a model from the table, then drain them (queued requests finish)."""
        self._forget_model(name)
        await asyncio.gather(*(self.loader.retire(e) for e in self.registry.remove_model(name)))

    def _forget_model(self, name: str) -> None:
        self._seen.pop(name, None)
        for key in {*self._built, *self._failed, *self._standing_in}:
            if key[0] == name:
                self._forget(*key)

    async def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        """Triton's repository index: every model on disk or in the table, per version, with state and reason."""
        on_disk = await asyncio.to_thread(model_names, self.root)
        loaded = set(self.registry.names())
        rows: list[dict[str, Any]] = []
        for name in sorted(loaded | set(on_disk)):
            entries = self.registry.versions(name) if name in loaded else []
            building, rebuilding = self.building(name, entries)
            if not ready_only:
                rows += [_row(name, version, "LOADING", LOADING_REASON) for version in building]
            if name not in loaded:
                if not ready_only and not self._loading.get(name):
                    why = "unloaded" if name in self.unloaded else "not loaded"
                    rows.append({"name": name, "state": "UNAVAILABLE", "reason": why})
                continue
            for entry in entries:
                state = entry.state.value.upper()
                if (ready_only and state != "READY") or entry.version in building:
                    continue  # not asked for, or listed above as LOADING
                rows.append(_row(name, entry.version, state, self.reason(name, entry, rebuilding) or ""))
        return rows

    def loading(self, name: str) -> list[int | None]:
        """Versions of `name` being built right now, newest first (a reload of a serving version included)."""
        return sorted(self._loading.get(name, ()), key=newest_first)

    def building(self, name: str, entries: list[ModelVersion]) -> tuple[list[int | None], set[int | None]]:
        """How listings show the versions of `name` being built, one row per version: those no serving entry
        covers are LOADING (newest first); a serving version being rebuilt stays READY, its old files answer."""
        serving = {e.version for e in entries if e.state is ModelState.READY}
        building = self.loading(name)
        return [v for v in building if v not in serving], {v for v in building if v in serving}

    def reason(self, name: str, entry: ModelVersion, rebuilding: set[int | None]) -> str | None:
        """Why a listed version is in its state, the same in the repository index and in /v1/models: files
        being rebuilt, then a stand-in, then a failed reload (the old files serve), then the entry's own."""
        if entry.version in rebuilding:
            return RELOADING_REASON
        key = (name, entry.version)
        if key in self._standing_in:
            return STANDING_IN_REASON
        return self._failed.get(key) or entry.reason

    def loading_names(self) -> list[str]:
        """Names of the models with a version being built right now."""
        return sorted(name for name, versions in self._loading.items() if versions)

    async def poll(self) -> None:
        """One scan of the repository: load new or changed models, unload removed ones (not those unloaded by hand)."""
        on_disk = await asyncio.to_thread(model_names, self.root)
        for name in on_disk:
            if name in self.unloaded:
                continue
            whole = await asyncio.to_thread(model_print, self.root / name)
            if whole != self._seen.get(name):
                log.info("model '%s' changed on disk: reloading", name)
                try:
                    await self.load(name)
                except AxonError as exc:
                    log.error("reload of model '%s' failed: %s", name, exc.message)
        for name in set(self.registry.names()) - set(on_disk):
            log.info("model '%s' left the repository: unloading", name)
            async with await self._model_lock(name):
                await self._take_out(name)

    def start_polling(self) -> None:
        """Poll the repository every `repository_poll_interval_s` seconds, if set."""
        interval = self.settings.repository_poll_interval_s
        if interval is not None and self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever(interval), name="poll-repository")

    async def _poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except Exception:  # a bad scan must not end polling
                log.exception("polling the model repository failed")

    async def stop(self) -> None:
        """Stop polling, then drain every batcher (queued and running requests finish) before the process exits."""
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
            self._poller = None
        await asyncio.gather(*(self.loader.retire(e) for e in self.registry.remove_all()))


def _row(name: str, version: int | None, state: str, reason: str) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name}
    if version is not None:
        row["version"] = str(version)
    return row | {"state": state, "reason": reason}
