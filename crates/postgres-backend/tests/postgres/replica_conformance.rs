//! The whole conformance suite with reads answered by a hot standby (`.ci/replica`): one
//! schema per check, the handles of a check sharing one consistency, so the contract holds as
//! it does on the primary alone.

use crate::support::ReplicaFactory;

persist_conformance::conformance_tests!(ReplicaFactory);
