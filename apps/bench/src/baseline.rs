//! The simple bot: each request goes straight to fal's queue on one account the moment it
//! arrives, and fal's FIFO does the queueing. Same fal adapter as mediagen, no queue of ours.

use crate::proc_stats::ThreadCpu;
use crate::rig::{Account, BotRun, JobRecord, fal_config, photo};
use crate::workload::{Arrival, Workload};
use anyhow::Context;
use mediagen_domain::catalog::Catalog;
use mediagen_domain::{AccountId, ModelId};
use mediagen_fal::FalGeneration;
use mediagen_ports::{Generation, GenerationRequest, MediaBytes};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Plays `workload` through the simple bot on `account` of the simulator at `base`.
///
/// # Errors
/// When the adapter cannot be configured.
pub async fn run(workload: Workload, base: String, account: Account, cpu: Arc<ThreadCpu>) -> anyhow::Result<BotRun> {
    let fal = Arc::new(FalGeneration::new(fal_config(&base, &[account], workload.time_scale)).context("fal adapter")?);
    let catalog = Arc::new(Catalog::builtin());
    let account = AccountId::new(account.name);
    let scale = workload.time_scale;

    let cpu_before = cpu.total_ns();
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for arrival in workload.arrivals {
        tokio::time::sleep_until((t0 + Duration::from_secs_f64(arrival.at / scale)).into()).await;
        let (fal, catalog, account) = (Arc::clone(&fal), Arc::clone(&catalog), account.clone());
        tasks.spawn(async move {
            let arrived = Instant::now();
            let ok = match handle(fal.as_ref(), &catalog, &account, &arrival).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(index = arrival.index, %error, "baseline request failed");
                    false
                }
            };
            JobRecord { index: arrival.index, user: arrival.user, arrived, finished: Some(Instant::now()), ok }
        });
    }
    let mut jobs = Vec::new();
    while let Some(job) = tasks.join_next().await {
        jobs.push(job.context("a baseline request panicked")?);
    }
    jobs.sort_by_key(|j| j.index);
    Ok(BotRun { jobs, t0, cpu_ns: cpu.total_ns() - cpu_before, db_calls: Default::default(), refused: 0 })
}

/// What a simple bot does with one message: upload the photo if any, submit, wait, download.
async fn handle(fal: &dyn Generation, catalog: &Catalog, account: &AccountId, arrival: &Arrival) -> anyhow::Result<()> {
    let model = catalog.get(&ModelId::new(arrival.model.endpoint())).context("model in the catalog")?;
    let mut input_image_urls = Vec::new();
    if arrival.model.has_photo() {
        let media =
            MediaBytes { bytes: photo(), content_type: "image/png".to_owned(), file_name: "photo.png".to_owned() };
        input_image_urls.push(fal.upload(account, media).await?);
    }
    let max_images = u8::try_from(model.max_images).unwrap_or(u8::MAX).max(1);
    let request = GenerationRequest {
        model: model.id.clone(),
        kind: model.kind,
        prompt: arrival.prompt(),
        size: model.default_size,
        num_images: if model.kind.makes_images() { arrival.num_images.clamp(1, max_images) } else { 1 },
        seed: None,
        input_image_urls,
        llm: None,
    };
    let handle = fal.submit(account, &request).await?;
    // The baseline bot follows for as long as fal's own start deadline plus a run allows.
    let until = chrono::Utc::now() + chrono::TimeDelta::minutes(15);
    let output = fal.wait(&handle, until).await?;
    for media in &output.media {
        fal.download(media).await?;
    }
    Ok(())
}
