//! The native engine's ConvNets against candle's model, and a ConvNet population against its
//! members alone.

mod common;

use beatmatch_tasks::models::conv::{ConvConfig, Pooling};
use beatmatch_tasks::models::ModelConfig;
use beatmatch_tasks::population::Members;
use beatmatch_tasks::{DatasetName, Problem};
use common::{gradients_equal_candles, members_equal_alone_and_among_3_and_30, population, Case};

/// The engine's loss and every gradient against candle's autograd on the same values: each
/// pooling, one and two blocks (6×6 → 3×3 → 1×1 pools an odd map), three input channels,
/// a non-square odd image, and a batch of one (tolerances: [`gradients_equal_candles`]).
#[test]
fn conv_gradients_equal_candles_backward() {
    let cases: [(&[usize], usize, usize, Pooling, usize); 10] = [
        (&[6, 6], 3, 1, Pooling::None, 5),
        (&[6, 6], 3, 2, Pooling::None, 5),
        (&[6, 6], 3, 1, Pooling::Max, 5),
        (&[6, 6], 3, 2, Pooling::Max, 5),
        (&[6, 6], 3, 1, Pooling::Avg, 5),
        (&[6, 6], 3, 2, Pooling::Avg, 5),
        (&[3, 4, 4], 2, 1, Pooling::Max, 5),
        (&[3, 5, 7], 4, 2, Pooling::Avg, 3),
        (&[5, 7], 2, 3, Pooling::Max, 4),
        (&[8, 8], 4, 2, Pooling::Max, 1),
    ];
    let classes = 4;
    for (shape, channels, depth, pooling, rows) in cases {
        let config = ModelConfig::Conv(ConvConfig { channels, depth, pooling });
        let what = format!("{} on {shape:?}, {rows} rows", config.id());
        let input: usize = shape.iter().product();
        let x: Vec<f32> = (0..rows * input).map(|i| (((i * 7919) % 23) as f32 - 11.0) / 7.0 + 0.01 * (i as f32).sin()).collect();
        let y: Vec<u32> = (0..rows as u32).map(|i| (i * 3 + 1) % classes as u32).collect();
        // Biases away from 0, so no pre-activation is exactly 0 (where the two differ).
        gradients_equal_candles(&Case { config, shape, classes, x: &x, y: &y, rows, seed: 1, nudge: (0.05, 1.7) }, &what);
    }
}

fn problem(pooling: Pooling) -> Problem {
    Problem::new(ModelConfig::Conv(ConvConfig { channels: 4, depth: 2, pooling }), DatasetName::Digits, 16, &[20, 40])
}

/// A ConvNet member's record is the same bytes alone, among 3 and among 30 (diverging members
/// among them), with max and average pooling.
#[test]
fn a_conv_member_gives_the_same_bytes_in_populations_of_1_3_and_30() {
    for pooling in [Pooling::Max, Pooling::Avg] {
        let p = problem(pooling);
        let data = p.dataset.load().unwrap();
        let all = members_equal_alone_and_among_3_and_30(&p, &data, 3, (40, 20), 1.0, &[0, 2, 9, 17, 20, 29]);
        let first = all[2].curve.first().unwrap().train_loss.unwrap();
        assert!(all[2].curve.last().unwrap().train_loss.unwrap() < first, "{pooling:?}: adam 1e-3 should learn: {:?}", all[2].curve);
    }
}

/// Advanced in pieces with a snapshot restored in between, a ConvNet population gives the
/// bytes of one uninterrupted run.
#[test]
fn a_conv_population_resumed_equals_one_run() {
    let p = problem(Pooling::Max);
    let data = p.dataset.load().unwrap();
    let members = [("adam:lr=1e-2", 40), ("muon:lr=0.02", 40), ("sgdm:lr=0.1", 30)];
    let whole = population(&p, &data, 3, &members).finish().unwrap();
    let mut pop = population(&p, &data, 3, &members);
    pop.advance(11).unwrap();
    let snap = pop.snapshot();
    pop.advance(9).unwrap();
    pop.restore(&snap).unwrap();
    pop.advance(7).unwrap();
    assert_eq!(pop.finish().unwrap(), whole);
}
