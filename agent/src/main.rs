//! `kbridge-agent` command line.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("kbridge-agent is not built yet")
}
