//! Invalid configurations and inputs give typed errors, never a panic.

use dac_core::engine::{Kind, Phase, Target};
use dac_core::sim::{self, Faults, InputChange};
use dac_core::{Config, Engine, Error, Graph, MemberSetup, Schedule, Topology};

fn metropolis(tol: f64) -> Config {
    Config {
        schedule: Schedule::Metropolis,
        tol,
        ..Config::default()
    }
}

fn run(
    graph: &Graph,
    inputs: &[f64],
    dim: usize,
    config: Config,
    faults: Faults,
) -> Result<sim::Report, Error> {
    sim::simulate(
        graph,
        inputs,
        dim,
        &sim::Options {
            config,
            faults,
            ..sim::Options::default()
        },
    )
}

#[test]
fn configuration_values_out_of_range() {
    for tol in [0.0, -1e-9, f64::NAN, 1.0, f64::INFINITY] {
        let err = metropolis(tol).validate().unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { field: "tol", .. }),
            "{tol}: {err}"
        );
    }
    let zero_rounds = Config {
        max_rounds: 0,
        ..Config::default()
    };
    assert!(matches!(
        zero_rounds.validate(),
        Err(Error::InvalidConfig {
            field: "max_rounds",
            ..
        })
    ));
    for eps in [0.0, -0.1, f64::NAN, f64::INFINITY] {
        let config = Config {
            schedule: Schedule::Laplacian { eps },
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(Error::InvalidConfig { field: "eps", .. })
        ));
    }
}

#[test]
fn laplacian_step_must_be_below_one_over_the_max_degree() {
    let ring = Graph::ring(10).unwrap();
    for eps in [0.5, 0.7] {
        let config = Config {
            schedule: Schedule::Laplacian { eps },
            ..Config::default()
        };
        match config.validate_for(&ring) {
            Err(Error::LaplacianStepTooLarge {
                max_degree: 2,
                limit,
                ..
            }) => assert_eq!(limit, 0.5),
            other => panic!("eps = {eps}: {other:?}"),
        }
    }
    let fine = Config {
        schedule: Schedule::Laplacian { eps: 0.49 },
        ..Config::default()
    };
    assert!(fine.validate_for(&ring).is_ok());
    // The simulator refuses it up front as well.
    assert!(matches!(
        run(
            &ring,
            &[1.0; 10],
            1,
            Config {
                schedule: Schedule::Laplacian { eps: 0.5 },
                ..Config::default()
            },
            Faults::default()
        ),
        Err(Error::LaplacianStepTooLarge { .. })
    ));
}

#[test]
fn disconnected_graphs_are_refused() {
    let graph = Graph::from_edges(4, &[(0, 1), (2, 3)]).unwrap();
    let err = run(&graph, &[1.0; 4], 1, metropolis(1e-9), Faults::default()).unwrap_err();
    assert_eq!(
        err,
        Error::Disconnected {
            components: 2,
            reached: 2,
            nodes: 4
        }
    );
}

#[test]
fn bad_inputs_name_the_rank_and_index() {
    let graph = Graph::exponential(4).unwrap();
    let mut x = vec![1.0; 8];
    x[5] = f64::INFINITY;
    assert_eq!(
        run(&graph, &x, 2, metropolis(1e-9), Faults::default()).unwrap_err(),
        Error::NonFiniteInput {
            rank: 2,
            index: 1,
            value: f64::INFINITY
        }
    );
    x[5] = f64::NAN;
    assert!(matches!(
        run(&graph, &x, 2, metropolis(1e-9), Faults::default()),
        Err(Error::NonFiniteInput {
            rank: 2,
            index: 1,
            ..
        })
    ));
    assert!(matches!(
        run(&graph, &[1.0; 7], 2, metropolis(1e-9), Faults::default()),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(
        run(&graph, &[], 0, metropolis(1e-9), Faults::default()),
        Err(Error::EmptyInput { .. })
    ));
}

#[test]
fn fault_parameters_are_checked() {
    let graph = Graph::exponential(4).unwrap();
    let x = [1.0; 4];
    let cases = [
        Faults {
            drop: 1.0,
            ..Faults::default()
        },
        Faults {
            duplicate: -0.1,
            ..Faults::default()
        },
        Faults {
            detect_after: 0,
            ..Faults::default()
        },
    ];
    for faults in cases {
        assert!(matches!(
            run(&graph, &x, 1, metropolis(1e-9), faults),
            Err(Error::InvalidConfig { .. })
        ));
    }
    let unknown = Faults {
        crashes: vec![(4, 1)],
        ..Faults::default()
    };
    assert_eq!(
        run(&graph, &x, 1, metropolis(1e-9), unknown).unwrap_err(),
        Error::UnknownNode {
            node: 4,
            members: 4
        }
    );
    let wrong_length = Faults {
        input_changes: vec![InputChange {
            member: 1,
            round: 2,
            input: vec![1.0, 2.0],
        }],
        ..Faults::default()
    };
    assert!(matches!(
        run(&graph, &x, 1, metropolis(1e-9), wrong_length),
        Err(Error::DimensionMismatch { rank: 1, .. })
    ));
}

#[test]
fn engine_setups_are_checked() {
    let config = metropolis(1e-9);
    let setup = |id, members, peers: &'static [usize]| MemberSetup {
        id,
        members,
        peers,
        diameter_bound: 1,
    };
    assert!(matches!(
        Engine::new(&config, setup(3, 3, &[0]), &[1.0]),
        Err(Error::UnknownNode {
            node: 3,
            members: 3
        })
    ));
    assert!(matches!(
        Engine::new(&config, setup(0, 3, &[0, 1]), &[1.0]),
        Err(Error::InvalidGraph { .. })
    ));
    assert!(matches!(
        Engine::new(&config, setup(0, 3, &[5]), &[1.0]),
        Err(Error::UnknownNode { node: 5, .. })
    ));
    // A bad input is no setup error: the engine has failed already, and
    // tells its peers why at the first poll.
    let laplacian = Config {
        schedule: Schedule::Laplacian { eps: 0.5 },
        ..metropolis(1e-9)
    };
    let refused: [(&Config, &[f64], Error); 3] = [
        (&config, &[], Error::EmptyInput { rank: 0 }),
        (
            &config,
            &[1.0, f64::NAN],
            Error::NonFiniteInput {
                rank: 0,
                index: 1,
                value: f64::NAN,
            },
        ),
        (
            &laplacian,
            &[1.0],
            Error::LaplacianStepTooLarge {
                eps: 0.5,
                max_degree: 2,
                limit: 0.5,
            },
        ),
    ];
    for (config, input, error) in refused {
        let mut engine = Engine::new(config, setup(0, 3, &[1, 2]), input).unwrap();
        assert_eq!(engine.status().phase, Phase::Failed, "{error}");
        let mut told = Vec::new();
        engine.poll_outgoing(|target, m| told.push((target, m.header.kind, m.abort)));
        assert_eq!(told.len(), 1, "{error}: {told:?}");
        let (target, kind, reason) = told[0];
        assert_eq!((target, kind), (Target::Peers, Kind::Abort), "{error}");
        // NaN is not equal to itself: compare the messages.
        let told = Error::from(reason.expect("an abort carries its reason"));
        assert_eq!(told.to_string(), error.to_string());
        let outcome = engine.take_outcome().expect("it has failed");
        assert_eq!(outcome.unwrap_err().to_string(), error.to_string());
    }
    let exact = Config::default();
    assert!(matches!(
        Engine::new(&exact, setup(0, 4, &[1]), &[1.0]),
        Err(Error::ExactNeedsEdge {
            a: 0,
            b: 2,
            round: 1
        })
    ));
    let mut engine = Engine::new(&config, setup(0, 3, &[1, 2]), &[1.0, 2.0]).unwrap();
    let before = engine.status();
    assert!(matches!(
        engine.set_input(&[1.0]),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(
        engine.set_input(&[1.0, f64::NEG_INFINITY]),
        Err(Error::NonFiniteInput {
            rank: 0,
            index: 1,
            ..
        })
    ));
    assert_eq!(engine.status(), before, "a rejected input changes nothing");
    assert!(matches!(
        engine.set_peers(&[1], 1),
        Err(Error::InvalidConfig { field: "peers", .. })
    ));
    assert_eq!(
        engine.status(),
        before,
        "a rejected neighbour set changes nothing"
    );
}

#[test]
fn unknown_names_are_typed_errors() {
    assert!(matches!(
        "star".parse::<Topology>(),
        Err(Error::UnknownTopology { .. })
    ));
    assert!(matches!(
        "gossip".parse::<Schedule>(),
        Err(Error::UnknownSchedule { .. })
    ));
}
