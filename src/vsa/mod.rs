//! Vector-symbolic-architecture operations (in progress).
