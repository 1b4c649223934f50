"""_include and _revinclude (with :iterate), each included resource access-checked like a read (fhir_server.access.guard)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..access.context import AccessContext
from .executor import SearchPage
from .parse import SearchRequest

if TYPE_CHECKING:
    from ..service import FhirService
    from ..storage.repository import Repository

MAX_ITERATIONS = 3
MAX_INCLUDED = 2000


def add_includes(svc: "FhirService", repo: "Repository", ctx: AccessContext,
                 req: SearchRequest, page: SearchPage) -> None:
    """Append included resources to `page.included` (deduplicated, never repeating a match)."""
    seen = {(t, i) for t, i, _ in page.matches}
    frontier = list(zip(page.pks, [(t, i) for t, i, _ in page.matches], strict=True))
    for depth in range(MAX_ITERATIONS):
        new: list[tuple[int, tuple[str, str]]] = []
        for inc in req.includes:
            if depth > 0 and not inc.iterate:
                continue
            source_pks = [pk for pk, (t, _) in frontier if inc.source in ("*", t)]
            if not source_pks:
                continue
            refs = repo.references_from(source_pks, inc.param, inc.target)
            found = repo.pks_of([r for r in refs if r not in seen])
            allowed = svc.guard.readable(repo, ctx, [(pk, t, i) for pk, t, i, _ in found])
            for pk, t, i, text in found:
                if (t, i) not in seen and pk in allowed:
                    seen.add((t, i))
                    page.included.append((t, i, text))
                    new.append((pk, (t, i)))
        for inc in req.revincludes:
            if depth > 0 and not inc.iterate:
                continue
            targets = [ti for _, ti in frontier]
            pks = repo.referencing(inc.source, inc.param, targets)
            texts = repo.texts_by_pk(pks)
            allowed = svc.guard.readable(repo, ctx, [(pk, t, i) for pk, (t, i, _) in texts.items()])
            for pk, (t, i, text) in texts.items():
                if (t, i) not in seen and pk in allowed:
                    seen.add((t, i))
                    page.included.append((t, i, text))
                    new.append((pk, (t, i)))
        if not new or len(page.included) >= MAX_INCLUDED:
            break
        frontier = new
