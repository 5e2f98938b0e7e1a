//! The processes of a training job: one, or the ranks of `mpirun -np N vaekit train ...` when
//! the binary is built with the `mpi` feature (MPI through rsmpi over the system's library).

use std::rc::Rc;

use anyhow::{Result, bail};
use vaekit::collective::{Collective, Solo};

/// Whether mpirun (Open MPI, MPICH or another PMI launcher) started this process as one of
/// several.
pub fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .any(|n| n.trim().parse::<usize>().is_ok_and(|n| n > 1))
}

/// This process's job: the MPI world when launched by mpirun, else a job of one.
pub fn ranks() -> Result<Rc<dyn Collective>> {
    if !launched_by_mpirun() {
        return Ok(Rc::new(Solo));
    }
    mpi_world()
}

#[cfg(feature = "mpi")]
fn mpi_world() -> Result<Rc<dyn Collective>> {
    let Some(universe) = mpi::initialize() else {
        bail!("MPI was initialised already in this process");
    };
    Ok(Rc::new(MpiRanks {
        world: universe.world(),
        _universe: universe,
    }))
}

#[cfg(not(feature = "mpi"))]
fn mpi_world() -> Result<Rc<dyn Collective>> {
    bail!(
        "started by mpirun, but this vaekit was built without MPI: rebuild with `--features mpi` (Debian: apt-get install openmpi-bin libopenmpi-dev libclang-dev)"
    )
}

/// The MPI world; MPI is finalised when the last handle goes.
#[cfg(feature = "mpi")]
struct MpiRanks {
    world: mpi::topology::SimpleCommunicator,
    _universe: mpi::environment::Universe,
}

#[cfg(feature = "mpi")]
impl Collective for MpiRanks {
    fn rank(&self) -> usize {
        use mpi::traits::Communicator;
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        use mpi::traits::Communicator;
        self.world.size() as usize
    }
    fn all_reduce_sum(&self, values: &mut [f64]) {
        use mpi::collective::SystemOperation;
        use mpi::traits::CommunicatorCollectives;
        let send = values.to_vec();
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
    }
}
