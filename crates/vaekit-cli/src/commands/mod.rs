//! One file per subcommand.

mod data;
mod eval;
mod reconstruct;
mod sample;
mod train;

use crate::cli::{Cli, Command, DataCommand, SplitArg};
use vaekit::data::Split;

/// Dispatches to the subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a, cli.device),
        Command::Sample(a) => sample::run(a, cli.device),
        Command::Reconstruct(a) => reconstruct::run(a, cli.device),
        Command::Eval(a) => eval::run(a, cli.device),
        Command::Data(DataCommand::Download(a)) => data::download(a),
    }
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Test => Split::Test,
        }
    }
}

/// Loads the data a run was trained on (or `data_dir` instead), shaped for its model.
fn run_data(cfg: &vaekit::config::TrainConfig, data_dir: Option<std::path::PathBuf>) -> anyhow::Result<vaekit::data::Splits> {
    let mut data_cfg = cfg.data.clone();
    if let Some(d) = data_dir {
        data_cfg.dir = Some(d);
    }
    data_cfg.limit = None;
    Ok(vaekit::data::load_data(&data_cfg, Some(cfg.model.image), cfg.seed)?)
}
