//! The model catalog and its price table, loaded from TOML text.
//!
//! `config/models.toml` ships the defaults ([`BUILTIN_TOML`]); an operator file layered on
//! top changes only what it names ([`Catalog::from_toml_layers`]). Reading the files is the
//! app's job: this module takes text. Every price is exact integer arithmetic on [`Money`].

use crate::discount::VolumeDiscounts;
use crate::job::JobSpec;
use crate::model::{ImageSize, ModelId, ModelKind};
use crate::money::{Money, MoneyOverflow};
use crate::prompt::Prompt;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::{Table, Value};

/// The shipped catalog, `config/models.toml`: the first layer under any operator file.
pub const BUILTIN_TOML: &str = include_str!("../../../config/models.toml");

/// How a model is priced; the `rule` key of a model's `pricing` table picks the variant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum PricingRule {
    /// One price per image, whatever its size (e.g. Nano Banana, $0.039).
    PerImage {
        /// Price of each image.
        #[serde(deserialize_with = "price_field::price")]
        price: Money,
    },
    /// A price per image that depends on its size (e.g. FLUX1.1 pro).
    ///
    /// A size pays the smallest tier whose pixel count is at least the size's, so a size
    /// between two tiers pays the larger one: 1024x768 pays the 1024x1024 tier and
    /// 576x1024 (exactly 768x768's pixels) pays the 768x768 tier. Validation makes every
    /// allowed size fit under the largest tier.
    PerImageByResolution {
        /// Tiers sorted by pixel count, smallest first; written as `{ "WxH" = "price" }`.
        #[serde(deserialize_with = "tiers")]
        tiers: Vec<ResolutionTier>,
    },
    /// A base price per image plus a surcharge per image when any reference image is given
    /// (e.g. FLUX Subject, $0.04 and +$0.01). The surcharge does not grow with the number
    /// of reference images: fal charges for using the feature, not per input.
    BasePlusSurcharge {
        /// Price of each image without a reference.
        #[serde(deserialize_with = "price_field::price")]
        price: Money,
        /// Added to each image's price when the request carries a reference image.
        #[serde(deserialize_with = "price_field::reference_surcharge")]
        reference_surcharge: Money,
    },
    /// A price per megapixel, rounded up per image (e.g. FLUX.1 schnell, $0.003/MP);
    /// see [`ImageSize::megapixels_rounded_up`].
    PerMegapixel {
        /// Price of one megapixel.
        #[serde(deserialize_with = "price_field::price")]
        price: Money,
    },
    /// A price by length of generated audio (e.g. F5 TTS, Stable Audio).
    ///
    /// Up to 30 seconds (zero included) pays `per_30_seconds` once; anything longer pays
    /// `per_minute` for each started minute, so 31–60 s is one minute and 61 s is two.
    /// Set both to the same price for a model billed by the minute only.
    PerAudioDuration {
        /// Price of a clip of at most 30 seconds.
        #[serde(deserialize_with = "price_field::per_30_seconds")]
        per_30_seconds: Money,
        /// Price of each started minute of a clip longer than 30 seconds.
        #[serde(deserialize_with = "price_field::per_minute")]
        per_minute: Money,
    },
    /// A price per named operation (e.g. Recraft V3 style creation versus generation,
    /// LoRA training versus generating with the trained model).
    PerOperation {
        /// The operation priced when the request names none.
        #[serde(default)]
        default_operation: Option<String>,
        /// Operations by name.
        operations: BTreeMap<String, OperationPrice>,
    },
    /// A price per 1,000 characters of input text, pro rata (e.g. ElevenLabs, $0.10).
    ///
    /// Rounded to the nearest micro-dollar, half up: 1,234 characters at $0.10 cost $0.1234.
    PerThousandCharacters {
        /// Price of 1,000 characters.
        #[serde(deserialize_with = "price_field::price")]
        price: Money,
    },
    /// Prices per million input and output tokens (LLMs).
    ///
    /// Each side is rounded to the nearest micro-dollar, half up, then the two are added.
    PerToken {
        /// Price of a million prompt tokens.
        #[serde(deserialize_with = "price_field::input_per_million")]
        input_per_million: Money,
        /// Price of a million generated tokens.
        #[serde(deserialize_with = "price_field::output_per_million")]
        output_per_million: Money,
    },
}

/// One step of a [`PricingRule::PerImageByResolution`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolutionTier {
    /// The largest size (by pixel count) this tier covers.
    pub size: ImageSize,
    /// Price of each image in this tier.
    pub price: Money,
}

/// The price of one operation of a [`PricingRule::PerOperation`] model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationPrice {
    /// The price of the operation, or of each image when `per_image` is set.
    #[serde(deserialize_with = "price_field::price")]
    pub price: Money,
    /// Charge per image produced rather than once per request.
    #[serde(default)]
    pub per_image: bool,
}

impl PricingRule {
    /// The rule's name as written in the config (`per_image`, `per_token`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            PricingRule::PerImage { .. } => "per_image",
            PricingRule::PerImageByResolution { .. } => "per_image_by_resolution",
            PricingRule::BasePlusSurcharge { .. } => "base_plus_surcharge",
            PricingRule::PerMegapixel { .. } => "per_megapixel",
            PricingRule::PerAudioDuration { .. } => "per_audio_duration",
            PricingRule::PerOperation { .. } => "per_operation",
            PricingRule::PerThousandCharacters { .. } => "per_thousand_characters",
            PricingRule::PerToken { .. } => "per_token",
        }
    }

    /// True when the price depends on the output size, so the model needs sizes.
    pub fn needs_size(&self) -> bool {
        matches!(self, PricingRule::PerImageByResolution { .. } | PricingRule::PerMegapixel { .. })
    }
}

impl fmt::Display for PricingRule {
    /// A short line for price lists shown to users and operators.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PricingRule::PerImage { price } => write!(f, "{price} per image"),
            PricingRule::PerImageByResolution { tiers } => {
                let list: Vec<String> = tiers.iter().map(|t| format!("{} {}", t.size, t.price)).collect();
                write!(f, "per image by size: {}", list.join(", "))
            }
            PricingRule::BasePlusSurcharge { price, reference_surcharge } => {
                write!(f, "{price} per image, +{reference_surcharge} with a reference image")
            }
            PricingRule::PerMegapixel { price } => write!(f, "{price} per megapixel"),
            PricingRule::PerAudioDuration { per_30_seconds, per_minute } => {
                write!(f, "{per_30_seconds} up to 30 s, {per_minute} per minute")
            }
            PricingRule::PerOperation { operations, .. } => {
                let list: Vec<String> = operations
                    .iter()
                    .map(|(name, op)| format!("{name} {}{}", op.price, if op.per_image { " per image" } else { "" }))
                    .collect();
                write!(f, "{}", list.join(", "))
            }
            PricingRule::PerThousandCharacters { price } => write!(f, "{price} per 1000 characters"),
            PricingRule::PerToken { input_per_million, output_per_million } => {
                write!(f, "{input_per_million} in / {output_per_million} out per 1M tokens")
            }
        }
    }
}

/// One model of the catalog: what it takes and what it costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The fal endpoint id (the key of its table in the config).
    pub id: ModelId,
    /// What it does.
    pub kind: ModelKind,
    /// The name users see.
    pub name: String,
    /// Offered to users. A disabled model still prices jobs already taken.
    pub enabled: bool,
    /// Output sizes allowed; empty for models that take no size.
    pub sizes: Vec<ImageSize>,
    /// The size used when a request names none; one of `sizes`.
    pub default_size: Option<ImageSize>,
    /// Images per request, at least 1.
    pub max_images: u32,
    /// Input (edit or reference) images per request.
    pub max_input_images: u32,
    /// Largest input image in bytes; `None` for no limit of our own.
    pub max_input_bytes: Option<u64>,
    /// How it is priced.
    pub pricing: PricingRule,
}

impl ModelSpec {
    /// True when `size` is one of the model's sizes.
    pub fn allows_size(&self, size: ImageSize) -> bool {
        self.sizes.contains(&size)
    }

    /// True when an input image of `bytes` is small enough for this model.
    pub fn accepts_input_bytes(&self, bytes: u64) -> bool {
        self.max_input_bytes.is_none_or(|max| bytes <= max)
    }

    /// The size a request for `size` runs at: the size itself or the model's default.
    ///
    /// # Errors
    /// [`PricingError::SizeNotAllowed`] when `size` is not one of the model's sizes.
    pub fn resolve_size(&self, size: Option<ImageSize>) -> Result<Option<ImageSize>, PricingError> {
        match size {
            None => Ok(self.default_size),
            Some(size) if self.allows_size(size) => Ok(Some(size)),
            Some(size) => {
                Err(PricingError::SizeNotAllowed { model: self.id.clone(), size, allowed: self.sizes.clone() })
            }
        }
    }

    fn price(&self, request: &PriceRequest) -> Result<Money, PricingError> {
        let model = || self.id.clone();
        if request.num_images == 0 || request.num_images > self.max_images {
            return Err(PricingError::ImageCount {
                model: model(),
                requested: request.num_images,
                max: self.max_images,
            });
        }
        if request.reference_images > self.max_input_images {
            return Err(PricingError::TooManyInputImages {
                model: model(),
                given: request.reference_images,
                max: self.max_input_images,
            });
        }
        let size = self.resolve_size(request.size)?;
        let images = i64::from(request.num_images);
        if request.operation.is_some() && !matches!(self.pricing, PricingRule::PerOperation { .. }) {
            return Err(PricingError::UnknownOperation {
                model: model(),
                operation: request.operation.clone().unwrap_or_default(),
                available: Vec::new(),
            });
        }
        let size_or_err = || size.ok_or_else(|| PricingError::MissingSize { model: model() });
        let total = match &self.pricing {
            PricingRule::PerImage { price } => price.checked_mul(images)?,
            PricingRule::PerImageByResolution { tiers } => {
                let size = size_or_err()?;
                let tier = tiers
                    .iter()
                    .find(|t| t.size.pixels() >= size.pixels())
                    .ok_or(PricingError::SizeAboveTiers { model: model(), size })?;
                tier.price.checked_mul(images)?
            }
            PricingRule::BasePlusSurcharge { price, reference_surcharge } => {
                let each = if request.reference_images > 0 { price.checked_add(*reference_surcharge)? } else { *price };
                each.checked_mul(images)?
            }
            PricingRule::PerMegapixel { price } => {
                let megapixels = to_i64(size_or_err()?.megapixels_rounded_up())?;
                price.checked_mul(megapixels)?.checked_mul(images)?
            }
            PricingRule::PerAudioDuration { per_30_seconds, per_minute } => {
                if request.audio_seconds <= 30 {
                    *per_30_seconds
                } else {
                    per_minute.checked_mul(i64::from(request.audio_seconds.div_ceil(60)))?
                }
            }
            PricingRule::PerOperation { default_operation, operations } => {
                let available = || operations.keys().cloned().collect::<Vec<_>>();
                let name = request
                    .operation
                    .as_deref()
                    .or(default_operation.as_deref())
                    .ok_or_else(|| PricingError::OperationRequired { model: model(), available: available() })?;
                let op = operations.get(name).ok_or_else(|| PricingError::UnknownOperation {
                    model: model(),
                    operation: name.to_owned(),
                    available: available(),
                })?;
                if op.per_image { op.price.checked_mul(images)? } else { op.price }
            }
            PricingRule::PerThousandCharacters { price } => {
                price.checked_mul_ratio(to_i64(request.characters)?, 1_000)?
            }
            PricingRule::PerToken { input_per_million, output_per_million } => {
                let input = input_per_million.checked_mul_ratio(to_i64(request.input_tokens)?, 1_000_000)?;
                let output = output_per_million.checked_mul_ratio(to_i64(request.output_tokens)?, 1_000_000)?;
                input.checked_add(output)?
            }
        };
        Ok(total)
    }
}

fn to_i64(count: u64) -> Result<i64, PricingError> {
    i64::try_from(count).map_err(|_| PricingError::Overflow)
}

/// The prompt helper: which LLM rewrites prompts, and how.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// The fal endpoint that runs it; a `kind = "llm"` model of the catalog, which prices it.
    pub endpoint: ModelId,
    /// The model the endpoint routes to, e.g. `google/gemini-2.5-flash`.
    pub model: String,
    /// The instructions sent before the user's prompt.
    pub system_prompt: String,
    /// The most tokens it may write; also what the intake estimate assumes it writes.
    pub max_output_tokens: u32,
    /// How long an enhanced prompt is reused for the same normalized prompt.
    pub cache_ttl_seconds: u64,
}

impl LlmSettings {
    /// [`Self::cache_ttl_seconds`] as a duration.
    pub fn cache_ttl(&self) -> chrono::TimeDelta {
        i64::try_from(self.cache_ttl_seconds)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX)
    }
}

/// How a job is sized at intake, before its real usage is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Estimates {
    /// Speaking rate that turns text into seconds of speech.
    pub tts_chars_per_second: u32,
    /// Characters per LLM token.
    pub chars_per_token: u32,
    /// Seconds of generated audio when the request does not say.
    pub audio_seconds: u32,
}

impl Default for Estimates {
    /// 15 characters a second (about 150 words a minute), 4 characters a token, 30 s of audio.
    fn default() -> Self {
        Self { tts_chars_per_second: 15, chars_per_token: 4, audio_seconds: 30 }
    }
}

impl Estimates {
    /// Seconds of speech for `characters` of text, each started second counted, at least 1.
    pub fn speech_seconds(&self, characters: u64) -> u32 {
        let seconds = characters.div_ceil(u64::from(self.tts_chars_per_second.max(1))).max(1);
        u32::try_from(seconds).unwrap_or(u32::MAX)
    }

    /// LLM tokens for `characters` of text, rounded up.
    pub fn tokens(&self, characters: u64) -> u64 {
        characters.div_ceil(u64::from(self.chars_per_token.max(1)))
    }
}

/// What is being priced: a model and the usage that its rule counts.
///
/// Fields a rule does not use are ignored, so one request shape fits every model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRequest {
    /// The model.
    pub model: ModelId,
    /// Output size; `None` means the model's default.
    pub size: Option<ImageSize>,
    /// Images produced (1 for non-image models).
    pub num_images: u32,
    /// Input or reference images sent with the request.
    pub reference_images: u32,
    /// Seconds of audio produced.
    pub audio_seconds: u32,
    /// Characters of input text.
    pub characters: u64,
    /// LLM prompt tokens.
    pub input_tokens: u64,
    /// LLM generated tokens.
    pub output_tokens: u64,
    /// The operation of a per-operation model; `None` means its default.
    pub operation: Option<String>,
}

impl PriceRequest {
    /// One image (or one run) of `model` at its defaults, nothing else counted.
    pub fn new(model: ModelId) -> Self {
        Self {
            model,
            size: None,
            num_images: 1,
            reference_images: 0,
            audio_seconds: 0,
            characters: 0,
            input_tokens: 0,
            output_tokens: 0,
            operation: None,
        }
    }

    /// The intake estimate of `spec`'s generation (prompt enhancement not included).
    ///
    /// Speech length comes from the text at [`Estimates::tts_chars_per_second`]; audio
    /// length is [`Estimates::audio_seconds`]; an LLM job counts the system prompt and
    /// the prompt at [`Estimates::chars_per_token`] and assumes the full
    /// [`LlmSettings::max_output_tokens`].
    pub fn for_job(spec: &JobSpec, catalog: &Catalog) -> Self {
        let characters = char_count(&spec.prompt);
        let kind = catalog.get(&spec.model).map_or(spec.kind, |m| m.kind);
        let estimates = catalog.estimates();
        let mut request = Self {
            size: spec.size,
            num_images: u32::from(spec.num_images),
            reference_images: u32::try_from(spec.input_media.len()).unwrap_or(u32::MAX),
            characters,
            ..Self::new(spec.model.clone())
        };
        match kind {
            ModelKind::TextToSpeech => request.audio_seconds = estimates.speech_seconds(characters),
            ModelKind::Audio => request.audio_seconds = estimates.audio_seconds,
            ModelKind::Llm => {
                let with_system = characters.saturating_add(catalog.llm().system_prompt.chars().count() as u64);
                request.input_tokens = estimates.tokens(with_system);
                request.output_tokens = u64::from(catalog.llm().max_output_tokens);
            }
            ModelKind::TextToImage | ModelKind::ImageEdit => {}
        }
        request
    }

    /// The intake estimate of rewriting `prompt` with the prompt helper.
    pub fn for_enhancement(prompt: &Prompt, catalog: &Catalog) -> Self {
        let llm = catalog.llm();
        let characters = char_count(prompt).saturating_add(llm.system_prompt.chars().count() as u64);
        Self {
            characters,
            input_tokens: catalog.estimates().tokens(characters),
            output_tokens: u64::from(llm.max_output_tokens),
            ..Self::new(llm.endpoint.clone())
        }
    }
}

fn char_count(prompt: &Prompt) -> u64 {
    u64::try_from(prompt.char_count()).unwrap_or(u64::MAX)
}

/// Why a request could not be priced; each reads well to a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// No such model in the catalog.
    #[error("there is no model {0}")]
    UnknownModel(ModelId),
    /// The model exists but is not offered now.
    #[error("the model {0} is not available right now")]
    ModelDisabled(ModelId),
    /// The size is not one the model offers.
    #[error("{model} does not make {size} images; {}", choices(.allowed))]
    SizeNotAllowed {
        /// The model.
        model: ModelId,
        /// The size asked for.
        size: ImageSize,
        /// The sizes it offers.
        allowed: Vec<ImageSize>,
    },
    /// The model is priced by size but neither the request nor the model names one.
    #[error("{model} needs an image size")]
    MissingSize {
        /// The model.
        model: ModelId,
    },
    /// The size is larger than the model's largest price tier.
    #[error("{model} has no price for {size} images")]
    SizeAboveTiers {
        /// The model.
        model: ModelId,
        /// The size asked for.
        size: ImageSize,
    },
    /// Zero images, or more than the model makes per request.
    #[error("{model} makes 1 to {max} images per request, not {requested}")]
    ImageCount {
        /// The model.
        model: ModelId,
        /// Images asked for.
        requested: u32,
        /// The most it makes.
        max: u32,
    },
    /// More input images than the model takes.
    #[error("{model} takes at most {max} input images, not {given}")]
    TooManyInputImages {
        /// The model.
        model: ModelId,
        /// Input images given.
        given: u32,
        /// The most it takes.
        max: u32,
    },
    /// An input image is larger than the model takes.
    #[error("an input image of {bytes} bytes is larger than {model} takes ({max} bytes)")]
    InputTooLarge {
        /// The model.
        model: ModelId,
        /// The image's size.
        bytes: u64,
        /// The largest it takes.
        max: u64,
    },
    /// A per-operation model was asked for no operation and has no default.
    #[error("{model} needs an operation: one of {}", available.join(", "))]
    OperationRequired {
        /// The model.
        model: ModelId,
        /// Its operations.
        available: Vec<String>,
    },
    /// The model has no operation of that name (or no operations at all).
    #[error("{model} has no operation {operation:?}{}", operations_hint(.available))]
    UnknownOperation {
        /// The model.
        model: ModelId,
        /// The operation asked for.
        operation: String,
        /// Its operations; empty for a model not priced per operation.
        available: Vec<String>,
    },
    /// The price does not fit in [`Money`]: absurd counts, never a real request.
    #[error("the price is too large to compute")]
    Overflow,
}

impl From<MoneyOverflow> for PricingError {
    fn from(_: MoneyOverflow) -> Self {
        PricingError::Overflow
    }
}

fn choices(sizes: &[ImageSize]) -> String {
    if sizes.is_empty() {
        return "it takes no size".to_owned();
    }
    let list: Vec<String> = sizes.iter().map(ToString::to_string).collect();
    format!("choose one of {}", list.join(", "))
}

fn operations_hint(available: &[String]) -> String {
    if available.is_empty() { String::new() } else { format!("; choose one of {}", available.join(", ")) }
}

/// A catalog file that cannot be used; names the layer, model and field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// A layer is not valid TOML.
    #[error("catalog layer {layer} is not valid TOML: {message}")]
    Syntax {
        /// The layer's position in the list given, from 1.
        layer: usize,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A top-level setting is missing, unknown or of the wrong type.
    #[error("catalog: {message}")]
    Format {
        /// What is wrong and where (the key path).
        message: String,
    },
    /// A model's table is missing a field, has an unknown one, or one of the wrong type.
    #[error("model `{model}`: {message}")]
    ModelFormat {
        /// The model's key.
        model: String,
        /// What is wrong, ending with the field's path.
        message: String,
    },
    /// A model's fields are well formed but do not make sense together.
    #[error("model `{model}`, field `{field}`: {reason}")]
    InvalidModel {
        /// The model's key.
        model: String,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A top-level setting is well formed but unusable.
    #[error("catalog field `{field}`: {reason}")]
    InvalidSetting {
        /// The field at fault, e.g. `default_model` or `llm.max_output_tokens`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The validated catalog: every model and price, the default models and the prompt helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    models: BTreeMap<ModelId, ModelSpec>,
    default_model: ModelId,
    edit_model: ModelId,
    llm: LlmSettings,
    estimates: Estimates,
    volume_discounts: VolumeDiscounts,
}

impl Catalog {
    /// The shipped catalog ([`BUILTIN_TOML`]).
    ///
    /// # Panics
    /// Never in practice: the shipped file is checked by this module's tests.
    pub fn builtin() -> Self {
        match Self::from_toml(BUILTIN_TOML) {
            Ok(catalog) => catalog,
            Err(err) => panic!("config/models.toml is invalid: {err}"),
        }
    }

    /// A catalog from one TOML document.
    ///
    /// # Errors
    /// See [`Self::from_toml_layers`].
    pub fn from_toml(text: &str) -> Result<Self, CatalogError> {
        Self::from_toml_layers(&[text])
    }

    /// A catalog from TOML layers deep-merged in order, later layers winning field by field.
    ///
    /// Tables merge key by key; any other value (arrays included) is replaced whole. A
    /// table whose `rule` changes is replaced whole, so switching a model's pricing rule
    /// leaves none of the old rule's fields behind. The merged result is then validated.
    ///
    /// # Errors
    /// [`CatalogError::Syntax`] for a layer that is not TOML; [`CatalogError::Format`] and
    /// [`CatalogError::ModelFormat`] for missing, unknown or mistyped fields;
    /// [`CatalogError::InvalidModel`] and [`CatalogError::InvalidSetting`] for values that
    /// do not fit together (a default size not among the sizes, a default model that does
    /// not exist, ...).
    pub fn from_toml_layers(layers: &[&str]) -> Result<Self, CatalogError> {
        let mut merged = Table::new();
        for (index, text) in layers.iter().enumerate() {
            let layer: Table = toml::from_str(text)
                .map_err(|e| CatalogError::Syntax { layer: index + 1, message: e.to_string().trim().to_owned() })?;
            deep_merge(&mut merged, layer);
        }
        let raw: RawCatalog = merged.try_into().map_err(|e| CatalogError::Format { message: one_line(&e) })?;
        let mut models = BTreeMap::new();
        for (key, table) in raw.models {
            let spec: RawModel = table
                .try_into()
                .map_err(|e| CatalogError::ModelFormat { model: key.clone(), message: one_line(&e) })?;
            let spec = spec.validate(&key)?;
            models.insert(spec.id.clone(), spec);
        }
        let catalog = Catalog {
            models,
            default_model: raw.default_model,
            edit_model: raw.edit_model,
            llm: raw.llm,
            estimates: raw.estimates,
            volume_discounts: raw.volume_discounts,
        };
        catalog.validate()?;
        Ok(catalog)
    }

    fn validate(&self) -> Result<(), CatalogError> {
        let must_be = |field: &'static str, id: &ModelId, kind: ModelKind, enabled: bool| {
            let invalid = |reason: String| Err(CatalogError::InvalidSetting { field, reason });
            match self.models.get(id) {
                None => invalid(format!("no model `{id}` in the catalog")),
                Some(m) if m.kind != kind => {
                    invalid(format!("`{id}` is a {} model; it must be {}", kind_name(m.kind), kind_name(kind)))
                }
                Some(m) if enabled && !m.enabled => invalid(format!("`{id}` is disabled")),
                Some(_) => Ok(()),
            }
        };
        must_be("default_model", &self.default_model, ModelKind::TextToImage, true)?;
        must_be("edit_model", &self.edit_model, ModelKind::ImageEdit, true)?;
        // A disabled prompt helper only turns enhancement off.
        must_be("llm.endpoint", &self.llm.endpoint, ModelKind::Llm, false)?;
        let setting = |field, reason: &str| Err(CatalogError::InvalidSetting { field, reason: reason.to_owned() });
        if self.llm.model.trim().is_empty() {
            return setting("llm.model", "must name the model the endpoint routes to");
        }
        if self.llm.system_prompt.trim().is_empty() {
            return setting("llm.system_prompt", "must not be empty");
        }
        if self.llm.max_output_tokens == 0 {
            return setting("llm.max_output_tokens", "must be at least 1");
        }
        if self.estimates.tts_chars_per_second == 0 {
            return setting("estimates.tts_chars_per_second", "must be at least 1");
        }
        if self.estimates.chars_per_token == 0 {
            return setting("estimates.chars_per_token", "must be at least 1");
        }
        Ok(())
    }

    /// The model with endpoint id `id`, enabled or not.
    pub fn get(&self, id: &ModelId) -> Option<&ModelSpec> {
        self.models.get(id)
    }

    /// Every model, enabled or not, by endpoint id.
    pub fn models(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.values()
    }

    /// The models offered to users, by endpoint id.
    pub fn enabled(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.values().filter(|m| m.enabled)
    }

    /// The model for plain text: enabled and text-to-image (validated).
    pub fn default_model(&self) -> &ModelSpec {
        &self.models[&self.default_model]
    }

    /// The model for a photo with a caption: enabled and image-edit (validated).
    pub fn edit_model(&self) -> &ModelSpec {
        &self.models[&self.edit_model]
    }

    /// The prompt helper's settings.
    pub fn llm(&self) -> &LlmSettings {
        &self.llm
    }

    /// The prompt helper's model row (its price), which may be disabled.
    pub fn llm_model(&self) -> &ModelSpec {
        &self.models[&self.llm.endpoint]
    }

    /// How intake estimates are sized.
    pub fn estimates(&self) -> &Estimates {
        &self.estimates
    }

    /// The monthly volume-discount tiers.
    pub fn volume_discounts(&self) -> &VolumeDiscounts {
        &self.volume_discounts
    }

    /// The exact list price of `request`, never negative.
    ///
    /// Disabled models are priced too, so jobs taken before a model was disabled settle.
    ///
    /// # Errors
    /// [`PricingError::UnknownModel`] for a model not in the catalog; otherwise the error of
    /// the first limit the request breaks (size, image count, input images, operation), or
    /// [`PricingError::Overflow`] for counts no real request has.
    pub fn price(&self, request: &PriceRequest) -> Result<Money, PricingError> {
        self.models.get(&request.model).ok_or_else(|| PricingError::UnknownModel(request.model.clone()))?.price(request)
    }

    /// The credit hold for `spec` at intake: its generation plus, when asked, the prompt
    /// helper's rewrite; see [`PriceRequest::for_job`] for the usage assumed.
    ///
    /// # Errors
    /// [`PricingError::UnknownModel`] or [`PricingError::ModelDisabled`] for the model (or
    /// for the prompt helper when enhancement is asked), [`PricingError::InputTooLarge`] for
    /// an input image over the model's limit, and any error of [`Self::price`].
    pub fn estimate(&self, spec: &JobSpec) -> Result<Money, PricingError> {
        let model = self.offered(&spec.model)?;
        if let Some(max) = model.max_input_bytes
            && let Some(bytes) = spec.input_media.iter().filter_map(|m| m.size_bytes).find(|&b| b > max)
        {
            return Err(PricingError::InputTooLarge { model: model.id.clone(), bytes, max });
        }
        let generation = self.price(&PriceRequest::for_job(spec, self))?;
        if !spec.enhance_prompt {
            return Ok(generation);
        }
        self.offered(&self.llm.endpoint)?;
        let enhancement = self.price(&PriceRequest::for_enhancement(&spec.prompt, self))?;
        Ok(generation.checked_add(enhancement)?)
    }

    fn offered(&self, id: &ModelId) -> Result<&ModelSpec, PricingError> {
        match self.models.get(id) {
            None => Err(PricingError::UnknownModel(id.clone())),
            Some(m) if !m.enabled => Err(PricingError::ModelDisabled(id.clone())),
            Some(m) => Ok(m),
        }
    }
}

fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::TextToImage => "text-to-image",
        ModelKind::ImageEdit => "image-edit",
        ModelKind::Llm => "llm",
        ModelKind::TextToSpeech => "text-to-speech",
        ModelKind::Audio => "audio",
    }
}

/// Merges `overlay` into `base`: tables key by key, everything else replaced.
fn deep_merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) if same_rule(existing, &incoming) => {
                deep_merge(existing, incoming);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// False when both tables name a `rule` and the names differ: the overlay then replaces.
fn same_rule(base: &Table, overlay: &Table) -> bool {
    match (base.get("rule"), overlay.get("rule")) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// toml's message with its key path (`in `a.b``) on one line.
fn one_line(err: &toml::de::Error) -> String {
    err.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    default_model: ModelId,
    edit_model: ModelId,
    llm: LlmSettings,
    #[serde(default)]
    estimates: Estimates,
    #[serde(default)]
    volume_discounts: VolumeDiscounts,
    // Tables kept raw so an error names the model it is in.
    models: BTreeMap<String, Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    kind: ModelKind,
    name: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    sizes: Vec<ImageSize>,
    default_size: Option<ImageSize>,
    #[serde(default = "one")]
    max_images: u32,
    #[serde(default)]
    max_input_images: u32,
    max_input_bytes: Option<u64>,
    pricing: PricingRule,
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

impl RawModel {
    fn validate(self, key: &str) -> Result<ModelSpec, CatalogError> {
        let invalid = |field, reason: String| Err(CatalogError::InvalidModel { model: key.to_owned(), field, reason });
        if key.trim().is_empty() || key.chars().any(char::is_whitespace) {
            return invalid("id", "an endpoint id is non-empty and has no spaces".to_owned());
        }
        if self.name.trim().is_empty() {
            return invalid("name", "must not be empty".to_owned());
        }
        if self.max_images == 0 {
            return invalid("max_images", "must be at least 1".to_owned());
        }
        if self.kind == ModelKind::ImageEdit && self.max_input_images == 0 {
            return invalid("max_input_images", "an image-edit model takes at least 1 input image".to_owned());
        }
        if self.max_input_bytes == Some(0) {
            return invalid("max_input_bytes", "must be at least 1 (leave it out for no limit)".to_owned());
        }
        match self.default_size {
            Some(size) if !self.sizes.contains(&size) => {
                return invalid("default_size", format!("{size} is not one of `sizes`"));
            }
            None if !self.sizes.is_empty() => {
                return invalid("default_size", "is required when `sizes` is given".to_owned());
            }
            _ => {}
        }
        if self.pricing.needs_size() && self.sizes.is_empty() {
            return invalid("sizes", format!("a `{}` price needs at least one size", self.pricing.name()));
        }
        match &self.pricing {
            PricingRule::PerImageByResolution { tiers } => {
                let Some(largest) = tiers.last() else {
                    return invalid("pricing.tiers", "needs at least one tier".to_owned());
                };
                if let Some(size) = self.sizes.iter().find(|s| s.pixels() > largest.size.pixels()) {
                    return invalid("pricing.tiers", format!("no tier covers the allowed size {size}"));
                }
            }
            PricingRule::PerOperation { default_operation, operations } => {
                if operations.is_empty() {
                    return invalid("pricing.operations", "needs at least one operation".to_owned());
                }
                if let Some(name) = default_operation
                    && !operations.contains_key(name)
                {
                    return invalid("pricing.default_operation", format!("{name:?} is not one of `operations`"));
                }
            }
            _ => {}
        }
        Ok(ModelSpec {
            id: ModelId::new(key),
            kind: self.kind,
            name: self.name,
            enabled: self.enabled,
            sizes: self.sizes,
            default_size: self.default_size,
            max_images: self.max_images,
            max_input_images: self.max_input_images,
            max_input_bytes: self.max_input_bytes,
            pricing: self.pricing,
        })
    }
}

/// A price in the config: a string of dollars, never a float, never negative.
struct Price(Money);

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Price;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a price in dollars as a string, e.g. \"0.04\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Price, E> {
                let money: Money = v.parse().map_err(E::custom)?;
                if money.is_negative() {
                    return Err(E::custom(format!("price {v:?} is negative")));
                }
                Ok(Price(money))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// One deserializer per price field, so an error names the field: serde's internally
/// tagged enums lose the key path that toml would otherwise report.
mod price_field {
    use super::Price;
    use crate::money::Money;
    use serde::{Deserialize, Deserializer, de::Error};

    macro_rules! price_fields {
        ($($name:ident),*) => {$(
            pub(super) fn $name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
                Price::deserialize(deserializer)
                    .map(|p| p.0)
                    .map_err(|e| D::Error::custom(format!("`{}`: {e}", stringify!($name))))
            }
        )*};
    }

    price_fields!(price, reference_surcharge, per_30_seconds, per_minute, input_per_million, output_per_million);
}

fn tiers<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<ResolutionTier>, D::Error> {
    use serde::de::Error;
    let raw = BTreeMap::<String, Price>::deserialize(deserializer)?;
    let mut tiers = Vec::with_capacity(raw.len());
    for (key, Price(price)) in raw {
        let size: ImageSize = key.parse().map_err(|e| D::Error::custom(format!("tier {key:?}: {e}")))?;
        tiers.push(ResolutionTier { size, price });
    }
    tiers.sort_by_key(|t| t.size.pixels());
    if let Some(pair) = tiers.windows(2).find(|p| p[0].size.pixels() == p[1].size.pixels()) {
        return Err(D::Error::custom(format!("tiers {} and {} have the same pixel count", pair[0].size, pair[1].size)));
    }
    Ok(tiers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::MediaRef;
    use proptest::prelude::*;

    fn id(s: &str) -> ModelId {
        ModelId::new(s)
    }

    fn dollars(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn size(s: &str) -> ImageSize {
        s.parse().unwrap()
    }

    fn price(catalog: &Catalog, request: PriceRequest) -> Money {
        catalog.price(&request).unwrap_or_else(|e| panic!("{request:?}: {e}"))
    }

    fn sized(model: &str, s: &str) -> PriceRequest {
        PriceRequest { size: Some(size(s)), ..PriceRequest::new(id(model)) }
    }

    fn spec(model: &str, kind: ModelKind, prompt: &str) -> JobSpec {
        JobSpec {
            model: id(model),
            kind,
            prompt: Prompt::parse(prompt).unwrap(),
            size: None,
            num_images: 1,
            input_media: Vec::new(),
            seed: None,
            enhance_prompt: false,
        }
    }

    #[test]
    fn builtin_loads_and_has_every_rule() {
        let catalog = Catalog::builtin();
        assert_eq!(catalog.default_model().id, id("fal-ai/nano-banana"));
        assert_eq!(catalog.edit_model().id, id("fal-ai/nano-banana/edit"));
        assert_eq!(catalog.llm().endpoint, id("openrouter/router"));
        assert_eq!(catalog.llm().model, "google/gemini-2.5-flash");
        assert_eq!(catalog.llm_model().kind, ModelKind::Llm);
        assert!(catalog.llm().system_prompt.ends_with("no preamble."), "{:?}", catalog.llm().system_prompt);
        assert_eq!(catalog.llm().cache_ttl(), chrono::TimeDelta::days(1));
        let forever = LlmSettings { cache_ttl_seconds: u64::MAX, ..catalog.llm().clone() };
        assert_eq!(forever.cache_ttl(), chrono::TimeDelta::MAX, "no panic on absurd TTLs");
        let rules: std::collections::BTreeSet<_> = catalog.models().map(|m| m.pricing.name()).collect();
        assert_eq!(rules.len(), 8, "every pricing rule has a real row: {rules:?}");
        let enabled: Vec<_> = catalog.enabled().map(|m| m.id.as_str()).collect();
        for wanted in [
            "fal-ai/flux-pro/v1.1",
            "fal-ai/flux/schnell",
            "fal-ai/nano-banana",
            "fal-ai/nano-banana/edit",
            "openrouter/router",
            "fal-ai/elevenlabs/tts/multilingual-v2",
        ] {
            assert!(enabled.contains(&wanted), "{wanted} enabled");
        }
        for present in ["fal-ai/flux-realism", "fal-ai/flux-subject", "fal-ai/f5-tts", "fal-ai/stable-audio"] {
            assert!(catalog.get(&id(present)).is_some(), "{present} present");
        }
        let edit = catalog.edit_model();
        assert_eq!((edit.max_input_images, edit.max_input_bytes), (3, Some(10 * 1024 * 1024)));
        assert_eq!(catalog.volume_discounts(), &VolumeDiscounts::default());
        assert_eq!(catalog.estimates(), &Estimates::default());
    }

    #[test]
    fn flux_pro_and_realism_price_by_resolution_tier() {
        let c = Catalog::builtin();
        let pro = "fal-ai/flux-pro/v1.1";
        assert_eq!(price(&c, sized(pro, "512x512")), dollars("0.02"));
        assert_eq!(price(&c, sized(pro, "768x768")), dollars("0.03"));
        assert_eq!(price(&c, sized(pro, "1024x1024")), dollars("0.04"));
        let realism = "fal-ai/flux-realism";
        assert_eq!(price(&c, sized(realism, "512x512")), dollars("0.03"));
        assert_eq!(price(&c, sized(realism, "768x768")), dollars("0.04"));
        assert_eq!(price(&c, sized(realism, "1024x1024")), dollars("0.05"));
    }

    #[test]
    fn sizes_between_tiers_pay_the_next_tier_up() {
        let c = Catalog::builtin();
        let pro = "fal-ai/flux-pro/v1.1";
        // 786,432 px: above 768x768, so the 1024x1024 tier.
        assert_eq!(price(&c, sized(pro, "landscape_4_3")), dollars("0.04"));
        // 589,824 px: exactly 768x768's pixels.
        assert_eq!(price(&c, sized(pro, "portrait_16_9")), dollars("0.03"));
        assert_eq!(price(&c, PriceRequest::new(id(pro))), dollars("0.04"), "default square_hd");
        assert_eq!(price(&c, PriceRequest { num_images: 4, ..sized(pro, "square") }), dollars("0.08"));
    }

    #[test]
    fn flux_subject_adds_the_reference_surcharge() {
        let c = Catalog::builtin();
        let subject = PriceRequest::new(id("fal-ai/flux-subject"));
        assert_eq!(price(&c, subject.clone()), dollars("0.04"));
        assert_eq!(price(&c, PriceRequest { reference_images: 1, ..subject.clone() }), dollars("0.05"));
        assert_eq!(price(&c, PriceRequest { reference_images: 1, num_images: 2, ..subject }), dollars("0.10"));
    }

    #[test]
    fn schnell_prices_per_megapixel_rounded_up() {
        let c = Catalog::builtin();
        let schnell = "fal-ai/flux/schnell";
        assert_eq!(price(&c, sized(schnell, "landscape_4_3")), dollars("0.003"), "1024x768 is 1 MP");
        assert_eq!(price(&c, sized(schnell, "square")), dollars("0.003"));
        assert_eq!(price(&c, sized(schnell, "square_hd")), dollars("0.003"), "1024x1024 is fal's 1 MP");
        assert_eq!(price(&c, PriceRequest { num_images: 4, ..sized(schnell, "square_hd") }), dollars("0.012"));
        assert_eq!(price(&c, PriceRequest::new(id(schnell))), dollars("0.003"), "default is one megapixel");
    }

    #[test]
    fn nano_banana_is_flat_per_image() {
        let c = Catalog::builtin();
        assert_eq!(price(&c, PriceRequest::new(id("fal-ai/nano-banana"))), dollars("0.039"));
        assert_eq!(price(&c, sized("fal-ai/nano-banana", "landscape_16_9")), dollars("0.039"));
        let edit = PriceRequest { reference_images: 3, ..PriceRequest::new(id("fal-ai/nano-banana/edit")) };
        assert_eq!(price(&c, edit.clone()), dollars("0.039"));
        assert_eq!(price(&c, PriceRequest { num_images: 2, ..edit }), dollars("0.078"));
    }

    #[test]
    fn audio_prices_per_30_seconds_then_per_started_minute() {
        let c = Catalog::builtin();
        let at = |model: &str, audio_seconds| price(&c, PriceRequest { audio_seconds, ..PriceRequest::new(id(model)) });
        let f5 = "fal-ai/f5-tts";
        assert_eq!(at(f5, 30), dollars("0.02"));
        assert_eq!(at(f5, 60), dollars("0.03"));
        assert_eq!(at(f5, 0), dollars("0.02"), "at least one unit");
        assert_eq!(at(f5, 31), dollars("0.03"));
        assert_eq!(at(f5, 61), dollars("0.06"));
        assert_eq!(at(f5, 120), dollars("0.06"));
        let stable = "fal-ai/stable-audio";
        assert_eq!(at(stable, 30), dollars("0.05"));
        assert_eq!(at(stable, 60), dollars("0.08"));
        assert_eq!(at(stable, 47), dollars("0.08"));
    }

    #[test]
    fn per_operation_models_price_each_operation() {
        let c = Catalog::builtin();
        let op =
            |model: &str, name: &str| PriceRequest { operation: Some(name.to_owned()), ..PriceRequest::new(id(model)) };
        let recraft = "fal-ai/recraft-v3";
        assert_eq!(price(&c, op(recraft, "create_style")), dollars("0.10"));
        assert_eq!(price(&c, op(recraft, "generate")), dollars("0.03"));
        assert_eq!(price(&c, PriceRequest::new(id(recraft))), dollars("0.03"), "default operation");
        let lora = "fal-ai/flux-lora-portrait-trainer";
        assert_eq!(price(&c, op(lora, "train")), dollars("2.00"));
        assert_eq!(price(&c, op(lora, "fine_tune")), dollars("1.00"));
        assert_eq!(price(&c, op(lora, "generate")), dollars("0.04"));
        assert_eq!(price(&c, PriceRequest { num_images: 3, ..op(lora, "generate") }), dollars("0.12"));
        assert_eq!(price(&c, PriceRequest { num_images: 3, ..op(lora, "train") }), dollars("2.00"), "once per run");
        let err = c.price(&op(lora, "dance")).unwrap_err();
        assert!(matches!(err, PricingError::UnknownOperation { .. }));
        assert!(err.to_string().contains("fine_tune, generate, train"), "{err}");
        let err = c.price(&op("fal-ai/nano-banana", "train")).unwrap_err();
        assert!(matches!(err, PricingError::UnknownOperation { ref available, .. } if available.is_empty()), "{err}");
    }

    #[test]
    fn elevenlabs_prices_per_thousand_characters() {
        let c = Catalog::builtin();
        let tts = |characters| {
            price(&c, PriceRequest { characters, ..PriceRequest::new(id("fal-ai/elevenlabs/tts/multilingual-v2")) })
        };
        assert_eq!(tts(1_000), dollars("0.10"));
        assert_eq!(tts(1_234), dollars("0.1234"));
        assert_eq!(tts(1), Money::from_micros(100));
        assert_eq!(tts(0), Money::ZERO);
    }

    #[test]
    fn llm_prices_input_and_output_tokens_separately() {
        let c = Catalog::builtin();
        let llm = |input_tokens, output_tokens| {
            price(&c, PriceRequest { input_tokens, output_tokens, ..PriceRequest::new(id("openrouter/router")) })
        };
        assert_eq!(llm(1_000_000, 0), dollars("0.30"));
        assert_eq!(llm(0, 1_000_000), dollars("2.50"));
        assert_eq!(llm(1_000_000, 1_000_000), dollars("2.80"));
        // 0.3 µ$ + 1,000 µ$ — the input side rounds to 0.
        assert_eq!(llm(1, 400), Money::from_micros(1_000));
        // 500 × 0.3 = 150 µ$, 400 × 2.5 = 1,000 µ$.
        assert_eq!(llm(500, 400), Money::from_micros(1_150));
    }

    #[test]
    fn requests_outside_the_model_limits_are_refused_clearly() {
        let c = Catalog::builtin();
        let err = c.price(&PriceRequest::new(id("fal-ai/nope"))).unwrap_err();
        assert_eq!(err, PricingError::UnknownModel(id("fal-ai/nope")));
        let err = c.price(&sized("fal-ai/flux-pro/v1.1", "2048x2048")).unwrap_err();
        assert!(matches!(err, PricingError::SizeNotAllowed { .. }));
        assert!(err.to_string().contains("2048x2048") && err.to_string().contains("1024x1024"), "{err}");
        let err = c.price(&sized("fal-ai/nano-banana/edit", "1024x1024")).unwrap_err();
        assert!(err.to_string().contains("takes no size"), "{err}");
        let err = c.price(&PriceRequest { num_images: 5, ..PriceRequest::new(id("fal-ai/nano-banana")) }).unwrap_err();
        assert_eq!(err, PricingError::ImageCount { model: id("fal-ai/nano-banana"), requested: 5, max: 4 });
        let err = c.price(&PriceRequest { num_images: 0, ..PriceRequest::new(id("fal-ai/nano-banana")) }).unwrap_err();
        assert!(matches!(err, PricingError::ImageCount { requested: 0, .. }));
        let err = c
            .price(&PriceRequest { reference_images: 4, ..PriceRequest::new(id("fal-ai/nano-banana/edit")) })
            .unwrap_err();
        assert_eq!(err, PricingError::TooManyInputImages { model: id("fal-ai/nano-banana/edit"), given: 4, max: 3 });
        let err = c
            .price(&PriceRequest {
                characters: u64::MAX,
                ..PriceRequest::new(id("fal-ai/elevenlabs/tts/multilingual-v2"))
            })
            .unwrap_err();
        assert_eq!(err, PricingError::Overflow);
    }

    #[test]
    fn estimate_prices_a_job_at_intake() {
        let c = Catalog::builtin();
        let image = spec("fal-ai/flux-pro/v1.1", ModelKind::TextToImage, "a cat");
        assert_eq!(c.estimate(&image), Ok(dollars("0.04")));
        let four = JobSpec { num_images: 4, size: Some(size("square")), ..image.clone() };
        assert_eq!(c.estimate(&four), Ok(dollars("0.08")));

        // 1,500 characters at $0.10 per 1,000.
        let text = "a".repeat(1_500);
        let speech = spec("fal-ai/elevenlabs/tts/multilingual-v2", ModelKind::TextToSpeech, &text);
        assert_eq!(c.estimate(&speech), Ok(dollars("0.15")));
        let request = PriceRequest::for_job(&speech, &c);
        assert_eq!((request.characters, request.audio_seconds), (1_500, 100), "15 characters a second");

        let prompt = Prompt::parse("a cat").unwrap();
        let helper = PriceRequest::for_enhancement(&prompt, &c);
        let system = c.llm().system_prompt.chars().count() as u64;
        assert_eq!(helper.input_tokens, (system + 5).div_ceil(4));
        assert_eq!(helper.output_tokens, 400);
        let enhancement = c.price(&helper).unwrap();
        assert!(enhancement > Money::ZERO);
        let enhanced = JobSpec { enhance_prompt: true, ..image.clone() };
        assert_eq!(c.estimate(&enhanced), Ok(dollars("0.04").checked_add(enhancement).unwrap()));
    }

    #[test]
    fn estimate_sizes_speech_from_characters_for_duration_priced_models() {
        let on = r#"[models."fal-ai/f5-tts"]
enabled = true
[estimates]
tts_chars_per_second = 10
"#;
        let c = Catalog::from_toml_layers(&[BUILTIN_TOML, on]).unwrap();
        let short = spec("fal-ai/f5-tts", ModelKind::TextToSpeech, &"a".repeat(300));
        assert_eq!(c.estimate(&short), Ok(dollars("0.02")), "300 chars = 30 s");
        let long = spec("fal-ai/f5-tts", ModelKind::TextToSpeech, &"a".repeat(301));
        assert_eq!(c.estimate(&long), Ok(dollars("0.03")), "31 s = one started minute");
    }

    #[test]
    fn estimate_refuses_what_intake_must_not_take() {
        let c = Catalog::builtin();
        let disabled = spec("fal-ai/flux-realism", ModelKind::TextToImage, "a cat");
        assert_eq!(c.estimate(&disabled), Err(PricingError::ModelDisabled(id("fal-ai/flux-realism"))));
        let media = |size_bytes| MediaRef { file_id: "f".into(), size_bytes };
        let edit = JobSpec {
            input_media: vec![media(Some(1_000)), media(Some(11 * 1024 * 1024))],
            ..spec("fal-ai/nano-banana/edit", ModelKind::ImageEdit, "make it blue")
        };
        let err = c.estimate(&edit).unwrap_err();
        assert!(matches!(err, PricingError::InputTooLarge { bytes, .. } if bytes == 11 * 1024 * 1024), "{err}");
        let fine = JobSpec { input_media: vec![media(Some(1_000)), media(None)], ..edit };
        assert_eq!(c.estimate(&fine), Ok(dollars("0.039")));
        let no_helper = r#"[models."openrouter/router"]
enabled = false
"#;
        let c = Catalog::from_toml_layers(&[BUILTIN_TOML, no_helper]).unwrap();
        let enhanced = JobSpec { enhance_prompt: true, ..spec("fal-ai/nano-banana", ModelKind::TextToImage, "a cat") };
        assert_eq!(c.estimate(&enhanced), Err(PricingError::ModelDisabled(id("openrouter/router"))));
    }

    #[test]
    fn an_override_layer_changes_only_what_it_names() {
        let base = Catalog::builtin();
        let layer = r#"
[models."fal-ai/flux-pro/v1.1".pricing.tiers]
"1024x1024" = "0.05"

[models."fal-ai/flux/schnell"]
enabled = false

[volume_discounts.tiers.volume]
percent_off = 7
"#;
        let c = Catalog::from_toml_layers(&[BUILTIN_TOML, layer]).unwrap();
        let pro = "fal-ai/flux-pro/v1.1";
        assert_eq!(price(&c, sized(pro, "1024x1024")), dollars("0.05"));
        assert_eq!(price(&c, sized(pro, "768x768")), dollars("0.03"), "the other tiers stay");
        assert_eq!(price(&c, sized(pro, "512x512")), dollars("0.02"));
        assert!(!c.get(&id("fal-ai/flux/schnell")).unwrap().enabled);
        assert!(c.enabled().all(|m| m.id.as_str() != "fal-ai/flux/schnell"));
        assert_eq!(
            c.get(&id("fal-ai/flux/schnell")).unwrap().pricing,
            base.get(&id("fal-ai/flux/schnell")).unwrap().pricing
        );
        assert_eq!(c.volume_discounts().tier_for(1_000).percent_off, 7);
        assert_eq!(c.volume_discounts().tier_for(1_000).from_requests, 1_000);
        for model in base.models().filter(|m| m.id.as_str() != pro && m.id.as_str() != "fal-ai/flux/schnell") {
            assert_eq!(c.get(&model.id), Some(model), "{} unchanged", model.id);
        }
        assert_eq!(c.llm(), base.llm());
    }

    #[test]
    fn an_override_may_switch_a_models_rule_whole() {
        let layer = r#"
default_model = "fal-ai/flux/schnell"
[models."fal-ai/flux-pro/v1.1".pricing]
rule = "per_image"
price = "0.045"
"#;
        let c = Catalog::from_toml_layers(&[BUILTIN_TOML, layer]).unwrap();
        assert_eq!(
            c.get(&id("fal-ai/flux-pro/v1.1")).unwrap().pricing,
            PricingRule::PerImage { price: dollars("0.045") }
        );
        assert_eq!(c.default_model().id, id("fal-ai/flux/schnell"));
    }

    fn layer_error(layer: &str) -> CatalogError {
        Catalog::from_toml_layers(&[BUILTIN_TOML, layer]).unwrap_err()
    }

    #[test]
    fn invalid_files_name_the_model_and_the_field() {
        let cases: &[(&str, &[&str])] = &[
            ("[models.\"fal-ai/nano-banana\"]\nmax_images = \"four\"\n", &["fal-ai/nano-banana", "max_images"]),
            ("[models.\"fal-ai/nano-banana\"]\nmax_imgs = 4\n", &["fal-ai/nano-banana", "max_imgs"]),
            (
                "[models.\"fal-ai/nano-banana\".pricing]\nprice = 0.05\n",
                &["fal-ai/nano-banana", "pricing", "`price`", "string"],
            ),
            (
                "[models.\"fal-ai/nano-banana\".pricing]\nprice = \"-0.05\"\n",
                &["fal-ai/nano-banana", "`price`", "negative"],
            ),
            ("[models.\"fal-ai/nano-banana\".pricing]\nprise = \"0.05\"\n", &["fal-ai/nano-banana", "prise"]),
            ("[models.\"fal-ai/nano-banana\".pricing]\nrule = \"per_hour\"\n", &["fal-ai/nano-banana", "per_hour"]),
            (
                "[models.\"fal-ai/nano-banana\"]\ndefault_size = \"2048x2048\"\n",
                &["fal-ai/nano-banana", "default_size"],
            ),
            ("[models.\"fal-ai/nano-banana\"]\nmax_images = 0\n", &["fal-ai/nano-banana", "max_images"]),
            (
                "[models.\"fal-ai/flux-pro/v1.1\"]\nsizes = [\"2048x2048\"]\ndefault_size = \"2048x2048\"\n",
                &["fal-ai/flux-pro/v1.1", "pricing.tiers", "2048x2048"],
            ),
            (
                "[models.\"fal-ai/flux-pro/v1.1\".pricing.tiers]\n\"huge\" = \"0.1\"\n",
                &["fal-ai/flux-pro/v1.1", "huge"],
            ),
            (
                "[models.\"fal-ai/flux-pro/v1.1\".pricing.tiers]\n\"1024x768\" = \"0.1\"\n\"768x1024\" = \"0.1\"\n",
                &["fal-ai/flux-pro/v1.1", "same pixel count"],
            ),
            (
                "[models.\"fal-ai/recraft-v3\".pricing]\ndefault_operation = \"paint\"\n",
                &["fal-ai/recraft-v3", "pricing.default_operation"],
            ),
            (
                "[models.\"fal-ai/nano-banana/edit\"]\nmax_input_images = 0\n",
                &["fal-ai/nano-banana/edit", "max_input_images"],
            ),
            ("[models.\"fal-ai/new\"]\nkind = \"text-to-image\"\n", &["fal-ai/new", "name"]),
            ("[models.\"fal-ai/new\"]\nkind = \"video\"\nname = \"x\"\n", &["fal-ai/new", "video"]),
            ("default_model = \"fal-ai/nope\"\n", &["default_model", "fal-ai/nope"]),
            ("default_model = \"fal-ai/elevenlabs/tts/multilingual-v2\"\n", &["default_model", "text-to-image"]),
            ("default_model = \"fal-ai/flux-realism\"\n", &["default_model", "disabled"]),
            ("edit_model = \"fal-ai/nano-banana\"\n", &["edit_model", "image-edit"]),
            ("[llm]\nendpoint = \"fal-ai/nano-banana\"\n", &["llm.endpoint", "llm"]),
            ("[llm]\nmax_output_tokens = 0\n", &["llm.max_output_tokens"]),
            ("[llm]\ntemperature = 0.2\n", &["temperature"]),
            ("[estimates]\nchars_per_token = 0\n", &["estimates.chars_per_token"]),
            ("[volume_discounts.tiers.volume]\npercent_off = 150\n", &["volume", "percent_off"]),
            ("defualt_model = \"x\"\n", &["defualt_model"]),
            ("default_model = [\n", &["layer 2"]),
        ];
        for (layer, needles) in cases {
            let message = layer_error(layer).to_string();
            for needle in *needles {
                assert!(message.contains(needle), "{layer:?} gave {message:?}, missing {needle:?}");
            }
        }
    }

    #[test]
    fn errors_are_typed_by_where_they_are() {
        assert!(matches!(
            layer_error("[models.\"fal-ai/nano-banana\"]\nmax_images = 0\n"),
            CatalogError::InvalidModel { ref model, field: "max_images", .. } if model == "fal-ai/nano-banana"
        ));
        assert!(matches!(
            layer_error("[models.\"fal-ai/nano-banana\"]\nmax_images = -1\n"),
            CatalogError::ModelFormat { ref model, .. } if model == "fal-ai/nano-banana"
        ));
        assert!(matches!(
            layer_error("edit_model = \"x\"\n"),
            CatalogError::InvalidSetting { field: "edit_model", .. }
        ));
        assert!(matches!(layer_error("x = \n"), CatalogError::Syntax { layer: 2, .. }));
        assert!(matches!(Catalog::from_toml(""), Err(CatalogError::Format { .. })));
    }

    #[test]
    fn pricing_rules_describe_themselves() {
        let c = Catalog::builtin();
        let line = |model: &str| c.get(&id(model)).unwrap().pricing.to_string();
        assert_eq!(line("fal-ai/nano-banana"), "$0.0390 per image");
        assert_eq!(line("fal-ai/flux-subject"), "$0.0400 per image, +$0.0100 with a reference image");
        assert!(line("fal-ai/flux-pro/v1.1").starts_with("per image by size: 512x512 $0.0200"));
    }

    fn request_for(model: ModelSpec) -> impl Strategy<Value = PriceRequest> {
        let sizes = model.sizes.clone();
        let operations: Vec<String> = match &model.pricing {
            PricingRule::PerOperation { operations, .. } => operations.keys().cloned().collect(),
            _ => Vec::new(),
        };
        (
            prop::option::of(prop::sample::select(if sizes.is_empty() { vec![ImageSize::new(1, 1)] } else { sizes })),
            0u32..=model.max_images + 1,
            0u32..=model.max_input_images + 1,
            any::<u32>(),
            prop_oneof![0u64..100_000, any::<u64>()],
            prop_oneof![0u64..10_000_000, any::<u64>()],
            prop_oneof![0u64..10_000_000, any::<u64>()],
            prop::option::of(prop::sample::select(if operations.is_empty() {
                vec![String::new()]
            } else {
                operations
            })),
        )
            .prop_map(
                move |(
                    size,
                    num_images,
                    reference_images,
                    audio_seconds,
                    characters,
                    input_tokens,
                    output_tokens,
                    operation,
                )| {
                    PriceRequest {
                        model: model.id.clone(),
                        size,
                        num_images,
                        reference_images,
                        audio_seconds,
                        characters,
                        input_tokens,
                        output_tokens,
                        operation,
                    }
                },
            )
    }

    fn any_request() -> impl Strategy<Value = PriceRequest> {
        let models: Vec<ModelSpec> = Catalog::builtin().models().cloned().collect();
        prop::sample::select(models).prop_flat_map(request_for)
    }

    proptest! {
        #[test]
        fn a_price_is_never_negative(request in any_request()) {
            if let Ok(price) = Catalog::builtin().price(&request) {
                prop_assert!(!price.is_negative(), "{request:?} priced {price}");
            }
        }

        #[test]
        fn operator_prices_never_make_a_negative_price(
            micros in prop::collection::vec(0i64..=i64::MAX / 2, 4),
            request in any_request(),
        ) {
            let as_dollars = |m: i64| format!("{}.{:06}", m / 1_000_000, m % 1_000_000);
            let layer = format!(
                "[models.\"fal-ai/flux-pro/v1.1\".pricing.tiers]\n\"512x512\" = \"{}\"\n\
                 [models.\"openrouter/router\".pricing]\ninput_per_million = \"{}\"\noutput_per_million = \"{}\"\n\
                 [models.\"fal-ai/flux/schnell\".pricing]\nprice = \"{}\"\n",
                as_dollars(micros[0]), as_dollars(micros[1]), as_dollars(micros[2]), as_dollars(micros[3]),
            );
            let catalog = Catalog::from_toml_layers(&[BUILTIN_TOML, &layer]).unwrap();
            if let Ok(price) = catalog.price(&request) {
                prop_assert!(!price.is_negative(), "{request:?} priced {price}");
            }
        }
    }
}
