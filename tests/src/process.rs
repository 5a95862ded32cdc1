//! Starting the real binary: filled in with the data plane.
