//! A fork carries its messages' vectors: the copies hold the numbers the source stores, so recall
//! over the new thread finds what it found over the source.

use persist::args::{Add, Reserve, UpdateContent};
use persist::lifecycle::Fork;
use persist::memory::MemoryBackend;
use persist::vector::{Embed, Embedding, ListEmbeddings, Nearest, StoredEmbedding};
use persist::{Content, Pipeline, PipelineExt, Role, ThreadId};

async fn vectors(pipeline: &Pipeline, thread: &ThreadId) -> Vec<StoredEmbedding> {
    let page = pipeline.embeddings(ListEmbeddings::new(thread.clone()).with_limit(1000)).await.unwrap();
    assert!(!page.has_more);
    page.items
}

/// What a fork copies of a vector: its message, model and numbers, and the message's role and
/// status (a copy is created when the fork writes it, so its creation time is the fork's).
fn copied(vectors: &[StoredEmbedding]) -> Vec<(String, u64, Embedding, Role, persist::Status)> {
    vectors
        .iter()
        .map(|s| (s.message_id.as_str().to_owned(), s.seq, s.embedding.clone(), s.role.clone(), s.status))
        .collect()
}

/// The texts a nearest read of `thread` finds for `query`, with their scores.
async fn found(pipeline: &Pipeline, thread: &ThreadId, query: &[f32]) -> Vec<(String, f32)> {
    let nearest = Nearest::new(Embedding::new("m", query.to_vec())).in_thread(thread.clone()).with_limit(10);
    let hits = pipeline.nearest(nearest).await.unwrap();
    hits.iter().map(|hit| (hit.message.content.to_text(), hit.score)).collect()
}

#[tokio::test]
async fn a_fork_writes_each_copied_message_its_vectors() {
    let pipeline = Pipeline::new(MemoryBackend::new());
    let (source, fork, part) =
        (ThreadId::new("source").unwrap(), ThreadId::new("fork").unwrap(), ThreadId::new("part").unwrap());
    let mut messages = Vec::new();
    for (text, vector) in [("east", [1.0, 0.1, 0.0]), ("north", [0.0, 3.0, 0.2]), ("up", [0.1, 0.0, 2.0])] {
        let add = Add::new(source.clone(), Role::User, Content::text(text));
        let added = pipeline.add(add.with_embedding(Embedding::new("m", vector.to_vec()))).await.unwrap().message;
        messages.push(added);
    }
    let other = Embed::new(source.clone(), messages[0].id.clone(), Embedding::new("other", vec![0.5, 0.5]));
    pipeline.embed(other).await.unwrap();
    pipeline.add(Add::new(source.clone(), Role::User, Content::text("no vector"))).await.unwrap();
    // An interrupted reply keeps its vector too.
    let reply = pipeline.reserve(Reserve::new(source.clone(), Role::Assistant)).await.unwrap().message;
    let cut = UpdateContent::appending(source.clone(), reply.id.clone(), Content::text("north-east, cut"));
    pipeline.update_content(cut).await.unwrap();
    pipeline.update_content(UpdateContent::interrupted(source.clone(), reply.id.clone())).await.unwrap();
    let embed = Embed::new(source.clone(), reply.id.clone(), Embedding::new("m", vec![1.0, 1.0, 0.0]));
    pipeline.embed(embed).await.unwrap();

    let report = pipeline.fork(Fork::new(source.clone(), fork.clone())).await.unwrap();
    assert_eq!((report.copied, report.vectors), (5, 5));
    let held = vectors(&pipeline, &source).await;
    assert_eq!(held.len(), 5);
    assert_eq!(copied(&vectors(&pipeline, &fork).await), copied(&held), "the same messages, models and numbers");
    for query in [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.3, 0.3, 0.9]] {
        assert_eq!(found(&pipeline, &fork, &query).await, found(&pipeline, &source, &query).await);
    }

    let again = pipeline.fork(Fork::new(source.clone(), fork.clone())).await.unwrap();
    assert_eq!((again.copied, again.already, again.vectors), (0, 5, 5), "written again: the same numbers");
    assert_eq!(copied(&vectors(&pipeline, &fork).await), copied(&held));

    let report = pipeline.fork(Fork::new(source.clone(), part.clone()).up_to(2)).await.unwrap();
    assert_eq!(report.vectors, 3, "the first two messages' vectors only");
    let models: Vec<_> =
        vectors(&pipeline, &part).await.iter().map(|s| (s.seq, s.embedding.model().to_owned())).collect();
    assert_eq!(models, [(1, "m".to_owned()), (1, "other".to_owned()), (2, "m".to_owned())]);
}
