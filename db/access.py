"""Who may see what, defined once and applied inside the queries (not only by hiding pages).

Every read of people, messages or alerts takes a `Scope`. Roles map to scopes and to the pages and actions they may
use here, and nowhere else:

- admin: everything, plus users, settings, audit log, export and erase.
- counsellor: risk and sentiment alerts and full messages of the people in their groups.
- teacher: trends of their groups; message texts (and alert messages) only when the `teachers_read_messages` setting
  says so (the counsellors decide).
- moderator: Screen comments and their own batches and jobs only (never a student's person).
- student: Chat only, only their own conversation; never anyone's labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, select, true

from db.models import Message, Person

ROLES = ("admin", "counsellor", "teacher", "moderator", "student")
PAGES = {  # which dashboard pages each role may open
    "admin": ("overview", "chat", "screen", "trends", "admin"),
    "counsellor": ("overview", "chat", "trends"),
    "teacher": ("overview", "trends"),
    "moderator": ("screen",),
    "student": ("chat",),
}
ACTIONS = {  # what each role may do beyond reading
    "admin": {"act_on_alerts", "correct_labels", "review_risk", "screen", "manage_users", "export_person",
              "erase_person", "change_settings", "read_audit", "fit_head", "chat_as_anyone",
              "see_model_files"},  # where the model's files are on the server (a path, a server's address)
    "counsellor": {"act_on_alerts", "correct_labels", "review_risk", "chat_as_anyone"},
    "teacher": {"correct_labels"},
    "moderator": {"screen", "correct_labels"},
    "student": set(),
}


@dataclass(frozen=True)
class Scope:
    """What one viewer may read. `groups` None means every group (admins, or a single-user laptop with sign-in
    off); `person` limits a student to their own handle; `texts` says whether message texts may be shown."""

    groups: frozenset[str] | None = None
    person: str | None = None
    texts: bool = True
    labels: bool = True
    batches: bool = True  # uploaded comment batches (moderators, admins)
    people: bool = True  # stored people at all (a moderator sees only batches)
    owner: str | None = None  # batches and jobs of this uploader only (a moderator); None = everyone's

    def allows_group(self, group: str | None) -> bool:
        if self.person is not None or not self.people:
            return False
        return self.groups is None or group in self.groups

    def may_write_for(self, handle: str, group: str | None, existing: Person | None) -> bool:
        """Whether this scope may store a chat message for `handle`: a student only as themselves; a counsellor
        only for a person of their groups, or someone new whom they put in one of their groups."""
        if self.person is not None:
            return handle == self.person
        if existing is not None:
            return existing.is_student and self.allows_group(existing.group_name)
        return self.people and (self.groups is None or (group is not None and group in self.groups))


EVERYTHING = Scope()


def scope_for(role: str, groups: frozenset[str], *, person: str | None = None,
              teachers_read_messages: bool = False, username: str | None = None) -> Scope:
    """The scope a signed-in user of `role` reads with (`username`: whose batches a moderator sees)."""
    if role == "admin":
        return EVERYTHING
    if role == "counsellor":
        return Scope(groups=groups, batches=False)
    if role == "teacher":
        return Scope(groups=groups, texts=teachers_read_messages, batches=False)
    if role == "moderator":
        return Scope(groups=frozenset(), people=False, owner=username or "\x00nobody")
    return Scope(groups=frozenset(), person=person or "\x00nobody", labels=False, batches=False)


def people_clause(scope: Scope) -> ColumnElement[bool]:
    """Which people rows this scope reads."""
    if scope.person is not None:
        return Person.handle == scope.person
    if not scope.people:
        return false()
    if scope.groups is None:
        return true()
    return Person.group_name.in_(sorted(scope.groups))


def batches_clause(scope: Scope, owner: ColumnElement[str | None]) -> ColumnElement[bool]:
    """Which uploaded batches (or jobs, by their `owner` column) this scope reads."""
    if not scope.batches:
        return false()
    return true() if scope.owner is None else owner == scope.owner


def messages_clause(scope: Scope) -> ColumnElement[bool]:
    """Which messages this scope reads: those of its people (messages without a person, from comment uploads
    without an author column, only through batches)."""
    if scope.groups is None and scope.person is None and scope.people:
        return true()
    return Message.person_id.in_(select(Person.id).where(people_clause(scope)))
