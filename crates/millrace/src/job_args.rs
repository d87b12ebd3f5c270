use serde::Serialize;

use crate::insert_opts::InsertOpts;

/// The arguments of a job of one kind, stored as the job's `args` JSON.
///
/// `KIND` is persisted in every row and selects the worker, so it must never change once jobs
/// exist (rename the type freely; keep the kind). Args serialize with serde and must serialize
/// to a JSON object.
///
/// ```
/// use millrace::{InsertOpts, JobArgs};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct SendEmail {
///     to: String,
///     template: String,
/// }
///
/// impl JobArgs for SendEmail {
///     const KIND: &'static str = "send_email";
///
///     // Optional: defaults for every insert of this kind.
///     fn insert_opts() -> InsertOpts {
///         InsertOpts::new().queue("email").max_attempts(5)
///     }
///
///     // Optional: only these fields make two jobs equal under `UniqueOpts::by_args`,
///     // like River's `river:"unique"` struct tags.
///     const UNIQUE_FIELDS: Option<&'static [&'static str]> = Some(&["to"]);
/// }
/// ```
pub trait JobArgs: Serialize + Send + Sync + 'static {
    /// The job's kind, persisted in `river_job.kind`.
    const KIND: &'static str;

    /// Former kinds of these args: rows inserted under them are still worked by this type's
    /// worker, so a kind can be renamed while old rows remain (River's `KindAliases`). New jobs
    /// are always inserted with [`JobArgs::KIND`]. Defaults to none.
    const KIND_ALIASES: &'static [&'static str] = &[];

    /// The fields compared by a unique-by-args insert, by their JSON names; a dotted path
    /// (`customer.id`) names a nested field. `None`, the default, compares all args.
    const UNIQUE_FIELDS: Option<&'static [&'static str]> = None;

    /// Insert options for every job of this kind. Options given at insert win over these; these
    /// win over the client's.
    ///
    /// Defaults to no options.
    fn insert_opts() -> InsertOpts {
        InsertOpts::default()
    }
}
