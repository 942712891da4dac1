"""People: the humans who approve, review, audit and administer (issue 17, item 1; docs/people.md).

- :mod:`.model` — roles, people, their tokens, the authenticated caller.
- :mod:`.store` — the only SQL for people, their OIDC identities and API tokens.
- :mod:`.service` — :class:`PeopleService`: authenticate a caller (admin token, person token, ID
  token), check roles, administer people and tokens, resolve an agent's bound owner for four-eyes.
"""
