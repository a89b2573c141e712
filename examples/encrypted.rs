//! Encryption at rest: content, an `email` metadata key and thread titles sealed in a SQLite
//! file, read back in the clear through the same pipeline; a key rotation through the
//! pipeline; and a tenant erased by destroying its key (crypto-shredding).
//!
//! Run: `cargo run --example encrypted` (keys from `PERSIST_ENCRYPTION_KEYS`,
//! `id:base64,…`, when set; a demo key otherwise).

use persist::args::{Add, Update};
use persist::encrypt::{AsStored, EncryptLayer, KeyId, KeyRing, RotateKeys, SecretKey};
use persist::read::{GetMessage, ListMessages};
use persist::sqlite::SqliteBackend;
use persist::{Content, Context, Metadata, PersistError, Pipeline, Role, TenantId, ThreadId};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), PersistError> {
    let ring = match KeyRing::from_env("PERSIST_ENCRYPTION_KEYS") {
        Ok(ring) => ring,
        Err(_) => {
            println!("PERSIST_ENCRYPTION_KEYS is not set: using a demo key (never do this in production)");
            KeyRing::new().with_key(KeyId::new("demo-1")?, SecretKey::new([1; 32]))?
        }
    };
    // A tenant whose data must be erasable on its own gets a key of its own (from a KMS).
    let acme = TenantId::new("acme")?;
    ring.add_tenant_key(&acme, KeyId::new("acme-1")?, SecretKey::new([2; 32]))?;

    let dir = std::env::temp_dir().join(format!("persist-encrypted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| PersistError::backend("creating a directory", e))?;
    let store = SqliteBackend::open(dir.join("sealed.db")).await?;
    // Last in the stack, closest to the store: layers above it see clear values.
    let encryption = EncryptLayer::new(ring.clone()).seal_metadata(["email"]).seal_titles(true);
    let pipeline = Pipeline::builder().layer(encryption.clone()).build(store.clone());

    let thread = ThreadId::new("support-7")?;
    let acme_ctx = Context::new().with_tenant(acme.clone());
    let metadata = Metadata::new().with("email", json!("jane@example.com")).with("channel", json!("web"));
    let question = Add::new(thread.clone(), Role::User, Content::text("My card ending 4242 was charged twice."))
        .with_metadata(metadata)
        .with_context(acme_ctx.clone());
    let question = pipeline.add(question).await?.message;
    pipeline
        .update(Update::thread(thread.clone()).with_title(Some("Double charge".into())).with_context(acme_ctx.clone()))
        .await?;
    let other = Add::new(thread.clone(), Role::User, Content::text("Another tenant's conversation"));
    pipeline.add(other.with_context(Context::new().with_tenant(TenantId::new("globex")?))).await?;

    let read =
        pipeline.get(GetMessage::new(thread.clone(), question.id.clone()).with_context(acme_ctx.clone())).await?;
    println!("through the pipeline: {}", read.as_ref().map(|m| m.content.to_text()).unwrap_or_default());
    let as_stored =
        GetMessage::new(thread.clone(), question.id.clone()).with_context(acme_ctx.clone().with_extension(AsStored));
    if let Some(stored) = pipeline.get(as_stored).await? {
        let envelope = stored.content.as_json().into_owned();
        println!("in the file:          {}…", &envelope[..envelope.len().min(60)]);
        println!("clear metadata:       channel = {}", stored.metadata.get("channel").cloned().unwrap_or_default());
    }

    // Rotation: a new ring key seals from now on; re-seal what the old one sealed.
    ring.add_key(KeyId::new("demo-2")?, SecretKey::new([3; 32]))?;
    let mut batch = RotateKeys::new();
    loop {
        let report = encryption.rotate(&pipeline, batch.clone()).await?;
        println!(
            "rotation batch: {} threads, {} messages, {} re-sealed",
            report.threads, report.messages, report.resealed
        );
        if report.done {
            break;
        }
        batch = batch.with_cursor(report.next_cursor);
    }

    // Crypto-shredding: acme's key is destroyed; its messages can never be read again.
    ring.destroy_tenant(&acme);
    match pipeline.list(ListMessages::new(thread.clone()).with_context(acme_ctx)).await {
        Err(PersistError::Unreadable { reason, .. }) => {
            println!("acme after its key is destroyed: unreadable ({reason})")
        }
        other => println!("acme after its key is destroyed: {other:?}"),
    }
    let globex = ListMessages::new(thread).with_context(Context::new().with_tenant(TenantId::new("globex")?));
    println!("globex is untouched:  {}", pipeline.list(globex).await?.items[0].content.to_text());
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
