"""Errors a user can act on: each says what is wrong and what to do."""


class InfinityError(ValueError):
    """Bad input to the pack (a wrong file, a bad setting); the message is meant for the user."""


class CheckpointError(InfinityError):
    """A file that is not the checkpoint the slot expects."""
