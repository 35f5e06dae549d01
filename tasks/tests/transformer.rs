//! The native engine's Transformer language models against candle's model, and a Transformer
//! population against its members alone.

mod common;

use beatmatch_tasks::models::transformer::TransformerConfig;
use beatmatch_tasks::models::ModelConfig;
use beatmatch_tasks::population::Members;
use beatmatch_tasks::{DatasetName, Problem};
use common::{gradients_equal_candles, members_equal_alone_and_among_3_and_30, population, windows, Case};

/// The engine's loss and every gradient against candle's autograd on the same values: one and
/// two blocks, one to four heads, windows of one token and of several (shorter than the
/// context: the position table's unused rows get no gradient), a batch of one, tokens that
/// repeat within a window (tolerances: [`gradients_equal_candles`]).
#[test]
fn transformer_gradients_equal_candles_backward() {
    // (vocabulary, d_model, layers, heads, context, windows, tokens per window)
    let cases = [(6, 4, 1, 2, 4, 2, 4), (7, 8, 2, 2, 5, 2, 5), (5, 6, 1, 3, 4, 3, 1), (9, 8, 2, 4, 6, 1, 6), (6, 4, 1, 1, 7, 2, 3)];
    for (vocab, d_model, layers, heads, context, rows, t) in cases {
        let config = ModelConfig::Transformer(TransformerConfig { d_model, layers, heads, context });
        let what = format!("{} (vocabulary {vocab}), {rows} windows", config.id());
        let (x, y) = windows(vocab, rows, t);
        gradients_equal_candles(&Case { config, shape: &[1], classes: vocab, x: &x, y: &y, rows, seed: 2, nudge: (0.1, 1.3) }, &what);
    }
}

fn problem() -> Problem {
    Problem::new(ModelConfig::Transformer(TransformerConfig { d_model: 8, layers: 2, heads: 2, context: 6 }), DatasetName::MobyDick, 4, &[15, 30])
}

/// A Transformer member's record (held-out next-byte loss included) is the same bytes alone, among
/// 3 and among 30, diverging members among them; a population resumed from a snapshot is one
/// uninterrupted run.
#[test]
fn a_transformer_member_gives_the_same_bytes_in_populations_of_1_3_and_30() {
    let p = problem();
    let data = p.dataset.load().unwrap();
    members_equal_alone_and_among_3_and_30(&p, &data, 7, (30, 15), 1000.0, &[0, 4, 9, 17, 20, 29]);
    // Members 4 and 17 of those thirty.
    let sgdm = format!("sgdm:lr={}", 3e-3 * 1000.0);
    let members = [("adam:lr=0.01", 30), (sgdm.as_str(), 15)];
    let whole = population(&p, &data, 7, &members).finish().unwrap();
    let mut pop = population(&p, &data, 7, &members);
    pop.advance(8).unwrap();
    let snap = pop.snapshot();
    pop.advance(5).unwrap();
    pop.restore(&snap).unwrap();
    assert_eq!(pop.finish().unwrap(), whole);
}
