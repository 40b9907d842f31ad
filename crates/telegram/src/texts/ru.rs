//! Русский.

use super::{BalanceView, Button, Strings, duration_ru, when};
use mediagen_domain::quota::QuotaRefusal;
use mediagen_domain::{FailureReason, Language, Money};
use mediagen_ports::Refusal;

/// Russian strings.
pub(super) struct Ru;

impl Strings for Ru {
    fn welcome(&self, first_name: &str) -> String {
        format!(
            "Привет, {first_name}! Я превращаю слова в картинки.\n\n\
             Пришлите описание — я нарисую. Пришлите фото с подписью — я его отредактирую.\n\
             /help — всё, что я умею."
        )
    }

    fn help(&self) -> String {
        "Что я умею:\n\
         • Просто текст — картинка моделью по умолчанию. Например: рыжая лиса на свежем снегу, акварель\n\
         • /img <описание> — выбрать модель и размер (цены на кнопках)\n\
         • Фото (или альбом) с подписью — редактирование. Например, фото с подписью: сделай в стиле комикса\n\
         • Ответ текстом на мою картинку — редактирование этой картинки\n\
         • /enhance <описание> — сначала улучшить описание\n\
         • /models — модели и цены\n\
         • /settings — модель, размер, фото или файл, улучшение описаний, язык\n\
         • /balance — сколько осталось на сегодня и на месяц\n\
         • /history — последние картинки\n\
         • /cancel — отменить последнее ожидающее задание"
            .to_owned()
    }

    fn queued(&self, job: i64, position: u32, total: u32, eta_secs: u32, price: Money) -> String {
        format!(
            "Задание №{job} в очереди: {position}-е из {total}, примерно {}.\nЗарезервировано: {price}",
            duration_ru(eta_secs)
        )
    }

    fn generating(&self, job: i64, model: &str) -> String {
        format!("Задание №{job}: генерирую моделью {model}…")
    }

    fn done(&self, job: i64, charged: Money) -> String {
        format!("Задание №{job} готово. Списано: {charged}")
    }

    fn failed(&self, job: i64, reason: &FailureReason, refunded: Money) -> String {
        let why = match reason {
            FailureReason::ContentPolicy => "фильтр содержимого отклонил запрос. Переформулируйте его.".to_owned(),
            FailureReason::InvalidInput(detail) => format!("модель не смогла использовать входные данные ({detail})."),
            FailureReason::Upstream(_) => "сервис генерации не отвечает. Попробуйте позже.".to_owned(),
            FailureReason::AccountLocked => {
                "сейчас ни один аккаунт генерации не принимает задания. Оператор уведомлён.".to_owned()
            }
            FailureReason::Timeout => "слишком долго.".to_owned(),
        };
        format!("Задание №{job} не выполнено: {why}\nВозвращено: {refunded}")
    }

    fn canceled(&self, job: i64, refunded: Money) -> String {
        format!("Задание №{job} отменено. Возвращено: {refunded}")
    }

    fn quota(&self, refusal: &QuotaRefusal) -> String {
        match refusal {
            QuotaRefusal::DailyJobs { limit, used, request_cost, resets_at } => format!(
                "Дневной лимит исчерпан: {used} из {limit} картинок сегодня. Сброс в {}. (Этот запрос стоил бы {request_cost}.)",
                when(*resets_at)
            ),
            QuotaRefusal::MonthlySpend { limit, spent, request_cost, resets_at } => format!(
                "Месячный лимит расходов: использовано {spent} из {limit}, а запрос стоит {request_cost}. Сброс в {}.",
                when(*resets_at)
            ),
            QuotaRefusal::QueueFull { limit, queued, request_cost } => format!(
                "У вас уже {queued} из {limit} заданий в очереди. Отправьте снова, когда одно из них начнётся. (Стоимость: {request_cost}.)"
            ),
        }
    }

    fn refusal(&self, refusal: &Refusal) -> String {
        match refusal {
            Refusal::Quota(quota) => self.quota(quota),
            Refusal::Blocked => "Извините, ваш доступ к боту приостановлен.".to_owned(),
            Refusal::UnknownModel(model) => format!("Модель {model} мне неизвестна. Список — /models."),
            Refusal::BadPrompt(why) => format!("Не могу использовать это описание: {why}."),
            Refusal::SizeNotAllowed { requested, allowed } => {
                format!("Размер {requested} недоступен для этой модели. Выберите: {}.", allowed.join(", "))
            }
            Refusal::TooManyImages { given, max } => {
                format!("Вы прислали {given} изображений, а модель принимает не больше {max}. Пришлите меньше.")
            }
            Refusal::FileTooLarge { size, max } => format!(
                "Файл весит {:.1} МБ, а предел — {:.1} МБ. Пришлите файл поменьше.",
                *size as f64 / 1_048_576.0,
                *max as f64 / 1_048_576.0
            ),
            Refusal::NotAnImage => {
                "Этот файл — не изображение, которое я могу прочитать. Пришлите фото или файл JPEG/PNG/WebP.".to_owned()
            }
            Refusal::RateLimited { retry_after_secs } => {
                format!(
                    "Слишком много запросов сразу. Подождите {} и попробуйте снова.",
                    duration_ru(*retry_after_secs)
                )
            }
            Refusal::TemporarilyUnavailable => {
                "Сейчас не могу принять запрос. Ничего не списано — попробуйте через минуту.".to_owned()
            }
        }
    }

    fn enhanced(&self, original: &str, enhanced: &str) -> String {
        format!("Ваше описание:\n{original}\n\nУлучшенное:\n{enhanced}")
    }

    fn models_header(&self) -> String {
        "Модели и цены:".to_owned()
    }

    fn img_usage(&self) -> String {
        "Напишите описание после команды, например: /img маяк на закате".to_owned()
    }

    fn enhance_usage(&self) -> String {
        "Напишите описание после команды, например: /enhance кот в космосе".to_owned()
    }

    fn choose_model(&self) -> String {
        "Выберите модель и размер:".to_owned()
    }

    fn settings(&self, model: &str, size: &str, as_file: bool, enhance: bool, language: Language) -> String {
        format!(
            "Ваши настройки:\n• Модель по умолчанию: {model}\n• Размер: {size}\n• Результат: {}\n• Улучшение описаний: {}\n• Язык: {}\n\nСменить модель: /settings model <id>; размер: /settings size 1024x1024.",
            if as_file { "файлом (полное качество)" } else { "фото" },
            if enhance { "вкл." } else { "выкл." },
            language.code()
        )
    }

    fn saved(&self) -> String {
        "Сохранено.".to_owned()
    }

    fn balance(&self, view: &BalanceView) -> String {
        let jobs_cap = view.jobs_today.1.map_or("без лимита".to_owned(), |c| c.to_string());
        let spend_cap = view.spend_month.1.map_or("без лимита".to_owned(), |c| c.to_string());
        format!(
            "Тариф: {}\nСегодня: {} из {jobs_cap} картинок\nВ этом месяце: {} из {spend_cap}\nВ очереди: {}, выполняется: {}",
            view.plan, view.jobs_today.0, view.spend_month.0, view.queued, view.in_flight
        )
    }

    fn history_empty(&self) -> String {
        "Картинок пока нет. Пришлите описание!".to_owned()
    }

    fn history_header(&self) -> String {
        "Ваши последние задания:".to_owned()
    }

    fn nothing_to_cancel(&self) -> String {
        "Нет ожидающих или выполняющихся заданий.".to_owned()
    }

    fn cancel_requested(&self, job: i64) -> String {
        format!("Задание №{job} уже выполняется; я попросил сервис его остановить.")
    }

    fn button_expired(&self) -> String {
        "Эта кнопка устарела. Отправьте запрос заново.".to_owned()
    }

    fn admins_only(&self) -> String {
        "Извините, эта команда только для операторов бота.".to_owned()
    }

    fn unknown_command(&self) -> String {
        "Не знаю такой команды. /help — список команд.".to_owned()
    }

    fn unsupported_message(&self) -> String {
        "Я понимаю только текст и изображения. Пришлите описание или фото с подписью.".to_owned()
    }

    fn reply_needs_image(&self) -> String {
        "Ответьте на одну из моих картинок, чтобы её изменить, или пришлите новое описание.".to_owned()
    }

    fn button(&self, button: Button) -> String {
        match button {
            Button::Again => "🔁 Ещё раз",
            Button::Variations => "🎲 Варианты",
            Button::Edit => "✏️ Изменить",
            Button::Generate => "🎨 Сгенерировать",
            Button::Cancel => "✖ Отменить",
            Button::ToggleFile => "📎 Фото / файл",
            Button::ToggleEnhance => "✨ Улучшение вкл/выкл",
            Button::SwitchLanguage => "🌐 English",
        }
        .to_owned()
    }
}
