//! Cross-crate tests: whole stacks over every backend. The tests are in `tests/tests/`.
