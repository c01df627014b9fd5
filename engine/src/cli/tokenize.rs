// `flashslim tokenize`: the token ids of a text as a JSON array (special tokens parsed).

use super::ModelOpts;
use anyhow::{Context, Result};
use clap::Args;
use flashslim::gguf::Gguf;
use flashslim::tokenizer::Tokenizer;
use std::io::Write;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelOpts,
    /// Text to tokenize
    #[arg(short = 'p', long = "prompt", value_name = "TEXT")]
    pub prompt: String,
    /// Add the BOS token (when the model has one)
    #[arg(long = "add-bos")]
    pub add_bos: bool,
}

pub fn main(a: TokenizeArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let path = a.model.model_path()?;
    let g = Gguf::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let tok = Tokenizer::from_gguf(&g).context("cannot build the tokenizer")?;
    let mut ids = tok.encode(&a.prompt, false, true)?;
    if a.add_bos {
        if let Some(b) = tok.bos() {
            ids.insert(0, b);
        }
    }
    writeln!(out, "{}", serde_json::to_string(&ids)?)?;
    Ok(ExitCode::SUCCESS)
}
