//! The three workloads, seeded so every run sends the same requests at the same
//! (simulated) instants.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The models users pick, with the share of requests each gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// Plain text → image, the catalog's default (45 %).
    NanoBanana,
    /// A photo with a caption → edited image (15 %).
    NanoBananaEdit,
    /// FLUX1.1 [pro] (20 %).
    FluxPro,
    /// FLUX [schnell] drafts (15 %).
    FluxSchnell,
    /// Text to speech (5 %).
    Speech,
}

impl Model {
    const MIX: [(Model, u32); 5] = [
        (Model::NanoBanana, 45),
        (Model::NanoBananaEdit, 15),
        (Model::FluxPro, 20),
        (Model::FluxSchnell, 15),
        (Model::Speech, 5),
    ];

    /// The fal endpoint, which is also the catalog's model id.
    pub fn endpoint(self) -> &'static str {
        match self {
            Model::NanoBanana => "fal-ai/nano-banana",
            Model::NanoBananaEdit => "fal-ai/nano-banana/edit",
            Model::FluxPro => "fal-ai/flux-pro/v1.1",
            Model::FluxSchnell => "fal-ai/flux/schnell",
            Model::Speech => "fal-ai/elevenlabs/tts/multilingual-v2",
        }
    }

    /// True when the request carries a photo (uploaded to fal storage before the submit).
    pub fn has_photo(self) -> bool {
        self == Model::NanoBananaEdit
    }

    fn draw(rng: &mut StdRng) -> (Model, u8) {
        let total: u32 = Self::MIX.iter().map(|(_, w)| w).sum();
        let mut pick = rng.random_range(0..total);
        let mut model = Model::NanoBanana;
        for (candidate, weight) in Self::MIX {
            if pick < weight {
                model = candidate;
                break;
            }
            pick -= weight;
        }
        let images = if model == Model::Speech {
            1
        } else {
            match rng.random_range(0..100) {
                0..80 => 1,
                80..95 => 2,
                _ => 4,
            }
        };
        (model, images)
    }
}

/// One request as a user sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arrival {
    /// Place in arrival order; tags the prompt so fal's records can be matched to it.
    pub index: usize,
    /// Simulated seconds after the workload's start.
    pub at: f64,
    /// Telegram user id.
    pub user: i64,
    /// What is asked.
    pub model: Model,
    /// Images asked for.
    pub num_images: u8,
}

impl Arrival {
    /// The prompt (or the text to speak), ending with the tag `#b<index>`.
    pub fn prompt(&self) -> String {
        const SUBJECTS: [&str; 6] = [
            "a lighthouse at dusk",
            "a red fox in fresh snow",
            "a tram in a rainy street",
            "a bowl of ramen, top view",
            "an old map of an imaginary island",
            "a cat asleep on a piano",
        ];
        format!("{} #b{}", SUBJECTS[self.index % SUBJECTS.len()], self.index)
    }
}

/// Reads the index back from a prompt made by [`Arrival::prompt`].
pub fn index_from_prompt(prompt: &str) -> Option<usize> {
    let (_, tail) = prompt.rsplit_once("#b")?;
    tail.trim().parse().ok()
}

/// A named, seeded list of arrivals and the time scale it runs at.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Short key: `day`, `burst` or `heavy`.
    pub key: &'static str,
    /// One line for the report.
    pub description: String,
    /// Simulated seconds per real second, for the simulator and every interval of ours.
    pub time_scale: f64,
    /// In arrival order.
    pub arrivals: Vec<Arrival>,
}

impl Workload {
    /// Requests per user.
    pub fn jobs_per_user(&self) -> BTreeMap<i64, usize> {
        let mut counts = BTreeMap::new();
        for arrival in &self.arrivals {
            *counts.entry(arrival.user).or_insert(0) += 1;
        }
        counts
    }

    /// Users who sent at most the median number of requests per user: everyone in the
    /// burst, the 20 one-shot users of the heavy workload, the quieter half of the day.
    pub fn light_users(&self) -> BTreeSet<i64> {
        let counts = self.jobs_per_user();
        let mut sorted: Vec<usize> = counts.values().copied().collect();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len().saturating_sub(1) / 2).copied().unwrap_or(0);
        counts.into_iter().filter(|(_, n)| *n <= median).map(|(user, _)| user).collect()
    }
}

/// How big the workloads are: the full sizes, or tiny ones for `--smoke`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sizes {
    /// Requests over the simulated day.
    pub day_requests: usize,
    /// Users of the day.
    pub day_users: usize,
    /// Length of the "day" in simulated seconds.
    pub day_secs: f64,
    /// Time scale of the day.
    pub day_scale: f64,
    /// Users of the burst.
    pub burst_users: usize,
    /// Requests per user in the burst.
    pub burst_each: usize,
    /// Window of the burst, simulated seconds.
    pub burst_window: f64,
    /// Requests of the heavy user.
    pub heavy_jobs: usize,
    /// One-shot users after the heavy one.
    pub light_users: usize,
    /// Time scale of the burst.
    pub burst_scale: f64,
    /// Time scale of the heavy workload.
    pub heavy_scale: f64,
}

impl Sizes {
    /// The full workloads.
    pub const FULL: Sizes = Sizes {
        day_requests: 2_000,
        day_users: 100,
        day_secs: 86_400.0,
        day_scale: 1_000.0,
        burst_users: 100,
        burst_each: 3,
        burst_window: 10.0,
        heavy_jobs: 50,
        light_users: 20,
        burst_scale: 5.0,
        heavy_scale: 3.0,
    };

    /// A few dozen jobs in a few seconds, for `just test`.
    pub const SMOKE: Sizes = Sizes {
        day_requests: 24,
        day_users: 8,
        day_secs: 600.0,
        day_scale: 200.0,
        burst_users: 20,
        burst_each: 3,
        burst_window: 10.0,
        heavy_jobs: 12,
        light_users: 6,
        burst_scale: 10.0,
        heavy_scale: 10.0,
    };
}

/// Requests per hour of the day, relative: quiet nights, an evening peak.
const HOURLY: [u32; 24] = [3, 2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 7, 6, 6, 7, 8, 10, 12, 13, 12, 9, 5];

/// (a) A steady day: users of very different activity (Zipf, s = 0.8) send sessions of a
/// few requests a few seconds apart, more in the evening.
pub fn day(sizes: &Sizes, seed: u64) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xDA7);
    let users: Vec<(i64, f64)> =
        (0..sizes.day_users).map(|rank| (10_001 + rank as i64, 1.0 / ((rank + 1) as f64).powf(0.8))).collect();
    let weight_sum: f64 = users.iter().map(|(_, w)| w).sum();
    let hour_sum: u32 = HOURLY.iter().sum();
    let hour_len = sizes.day_secs / 24.0;
    let mut raw: Vec<(f64, i64)> = Vec::with_capacity(sizes.day_requests);
    while raw.len() < sizes.day_requests {
        let mut pick = rng.random_range(0..hour_sum);
        let mut hour = 0;
        while pick >= HOURLY[hour] {
            pick -= HOURLY[hour];
            hour += 1;
        }
        let mut at = (hour as f64 + rng.random::<f64>()) * hour_len;
        let mut w = rng.random::<f64>() * weight_sum;
        let mut user = users[0].0;
        for (id, weight) in &users {
            if w < *weight {
                user = *id;
                break;
            }
            w -= weight;
        }
        loop {
            raw.push((at.min(sizes.day_secs - 1.0), user));
            if raw.len() >= sizes.day_requests || rng.random::<f64>() >= 0.6 {
                break;
            }
            at += rng.random_range(5.0..45.0);
        }
    }
    let description = format!(
        "steady day: {} requests from {} users over {:.0} simulated s, sessions of a few requests, evening peak",
        sizes.day_requests, sizes.day_users, sizes.day_secs
    );
    finish("day", description, sizes.day_scale, raw, &mut rng)
}

/// (b) A burst: every user sends a few requests within a few seconds.
pub fn burst(sizes: &Sizes, seed: u64) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xB0257);
    let mut raw = Vec::new();
    for u in 0..sizes.burst_users {
        for _ in 0..sizes.burst_each {
            raw.push((rng.random::<f64>() * sizes.burst_window, 20_001 + u as i64));
        }
    }
    let description = format!(
        "burst: {} users x {} requests within {:.0} simulated s",
        sizes.burst_users, sizes.burst_each, sizes.burst_window
    );
    finish("burst", description, sizes.burst_scale, raw, &mut rng)
}

/// (c) A heavy user's script sends many requests in half a second; then one-shot users
/// send one each over the next second.
pub fn heavy(sizes: &Sizes, seed: u64) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x4EA);
    let mut raw = Vec::new();
    for i in 0..sizes.heavy_jobs {
        raw.push((0.5 * i as f64 / sizes.heavy_jobs as f64, 30_001));
    }
    for u in 0..sizes.light_users {
        raw.push((1.0 + u as f64 / sizes.light_users as f64, 30_101 + u as i64));
    }
    let description = format!(
        "heavy user: {} requests in 0.5 simulated s, then {} users with one request each",
        sizes.heavy_jobs, sizes.light_users
    );
    finish("heavy", description, sizes.heavy_scale, raw, &mut rng)
}

fn finish(
    key: &'static str,
    description: String,
    time_scale: f64,
    mut raw: Vec<(f64, i64)>,
    rng: &mut StdRng,
) -> Workload {
    raw.sort_by(|a, b| a.0.total_cmp(&b.0));
    let arrivals = raw
        .into_iter()
        .enumerate()
        .map(|(index, (at, user))| {
            let (model, num_images) = Model::draw(rng);
            Arrival { index, at, user, model, num_images }
        })
        .collect();
    Workload { key, description, time_scale, arrivals }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_reproducible_and_sized() {
        let sizes = Sizes::FULL;
        let a = day(&sizes, 7);
        assert_eq!(a.arrivals, day(&sizes, 7).arrivals);
        assert_eq!(a.arrivals.len(), 2_000);
        assert!(a.arrivals.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(a.arrivals.iter().all(|x| (0.0..86_400.0).contains(&x.at)));
        let b = burst(&sizes, 7);
        assert_eq!(b.arrivals.len(), 300);
        assert_eq!(b.light_users().len(), 100);
        let c = heavy(&sizes, 7);
        assert_eq!(c.arrivals.len(), 70);
        assert_eq!(c.light_users().len(), 20);
        assert!(!c.light_users().contains(&30_001));
    }

    #[test]
    fn prompt_tags_round_trip() {
        let w = burst(&Sizes::SMOKE, 1);
        for arrival in &w.arrivals {
            assert_eq!(index_from_prompt(&arrival.prompt()), Some(arrival.index));
        }
    }
}
