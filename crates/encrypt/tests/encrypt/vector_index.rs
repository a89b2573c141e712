//! persist-recall's `VectorIndex` with `EncryptLayer`: below the layer (between it and the
//! store, where the docs place it) it holds what the store holds, so a stack with clear vectors
//! answers with the index exactly as without it, and refuses what it refused (a filter on a
//! sealed metadata key); above a layer that keeps vectors out, the index cannot read them and the
//! caller gets the layer's own refusal.

use persist::args::{Add, Update};
use persist::memory::MemoryBackend;
use persist::recall::VectorIndex;
use persist::vector::{Embedding, Nearest};
use persist::{Content, Metadata, PersistError, Pipeline, Role, ThreadId};
use serde_json::json;

use crate::support;

#[tokio::test]
async fn below_the_layer_the_index_answers_as_the_stack_does() {
    let store = MemoryBackend::new();
    let layer = || support::layer(support::ring()).seal_metadata(["user_id"]).clear_vectors(true);
    let plain = Pipeline::builder().layer(layer()).build(store.clone());
    let index = VectorIndex::new();
    let indexed = Pipeline::builder().layer(layer()).layer(index.layer()).build(store.clone());
    for (n, vector) in [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]].into_iter().enumerate() {
        let thread = ThreadId::new(format!("t{n}")).unwrap();
        let add = Add::new(thread.clone(), Role::User, Content::text(format!("secret {n}")))
            .with_embedding(Embedding::new("m", vector.to_vec()));
        plain.add(add).await.unwrap();
        let tags =
            Metadata::new().with("user_id", json!("u1")).with("plan", json!(if n == 0 { "pro" } else { "free" }));
        plain.update(Update::thread(thread).with_metadata(tags)).await.unwrap();
    }
    let query = || Nearest::new(Embedding::new("m", vec![1.0, 0.2])).with_limit(3);
    let found = indexed.nearest(query()).await.unwrap();
    assert_eq!(found, plain.nearest(query()).await.unwrap());
    assert_eq!(found[0].message.content, Content::text("secret 0"), "opened on the way up");
    let pro = query().for_resource("plan", "pro");
    assert_eq!(indexed.nearest(pro.clone()).await.unwrap(), plain.nearest(pro).await.unwrap());
    // A filter on a sealed key: refused by the layer above the index, as without it.
    let sealed = indexed.nearest(query().for_resource("user_id", "u1")).await.unwrap_err();
    assert!(matches!(sealed, PersistError::InvalidInput { field: "thread_filter", .. }), "{sealed:?}");
    assert_eq!(index.stats().answered, 2);
}

#[tokio::test]
async fn above_a_layer_that_keeps_vectors_out_the_caller_gets_its_refusal() {
    let index = VectorIndex::new();
    let pipeline =
        Pipeline::builder().layer(index.layer()).layer(support::layer(support::ring())).build(MemoryBackend::new());
    let refused = pipeline.nearest(Nearest::new(Embedding::new("m", vec![1.0]))).await.unwrap_err();
    assert!(matches!(&refused, PersistError::Unsupported { what } if what.contains("clear_vectors")), "{refused:?}");
    let stats = index.stats();
    assert_eq!((stats.answered, stats.fallbacks, stats.tenants), (0, 1, 0), "{stats:?}");
}

/// Crypto-shredding a tenant with an index below the layer: its queries are answered as
/// without the index (the layer decides), the other tenants' as before, and `forget` drops the
/// index's copy of its vectors, which no refused query would reach again.
#[tokio::test]
async fn a_shredded_tenant_is_answered_as_without_the_index_and_forgotten() {
    use persist::encrypt::{KeyId, SecretKey};
    use persist::{Context, TenantId};

    let ring = support::ring();
    let acme = TenantId::new("acme").unwrap();
    ring.add_tenant_key(&acme, KeyId::new("acme-1").unwrap(), SecretKey::new([99; 32])).unwrap();
    let store = MemoryBackend::new();
    let layer = || support::layer(ring.clone()).clear_vectors(true);
    let plain = Pipeline::builder().layer(layer()).build(store.clone());
    let index = VectorIndex::new();
    let indexed = Pipeline::builder().layer(layer()).layer(index.layer()).build(store.clone());
    let of = |name: &str| Context::new().with_tenant(TenantId::new(name).unwrap());
    for name in ["acme", "globex"] {
        let add = Add::new(ThreadId::new("t").unwrap(), Role::User, Content::text(format!("{name}'s")))
            .with_embedding(Embedding::new("m", vec![1.0, 0.0]))
            .with_context(of(name));
        plain.add(add).await.unwrap();
    }
    let query = |name: &str| Nearest::new(Embedding::new("m", vec![1.0, 0.0])).with_context(of(name));
    for name in ["acme", "globex"] {
        assert_eq!(indexed.nearest(query(name)).await.unwrap().len(), 1);
    }
    assert_eq!(index.stats().tenants, 2);

    ring.destroy_tenant(&acme);
    let shredded = format!("{:?}", indexed.nearest(query("acme")).await);
    assert_eq!(shredded, format!("{:?}", plain.nearest(query("acme")).await));
    assert!(shredded.contains("destroyed") || shredded.contains("Unreadable"), "{shredded}");
    assert_eq!(indexed.nearest(query("globex")).await.unwrap(), plain.nearest(query("globex")).await.unwrap());
    index.forget(Some(&acme));
    let stats = index.stats();
    assert_eq!((stats.tenants, stats.vectors), (1, 1), "{stats:?}");
}
