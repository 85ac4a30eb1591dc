"""Generate the Gmsh meshes of data/meshes/ (run by scripts/make-meshes.sh).

Every mesh is gmsh's default 2D mesher (Frontal-Delaunay, Mesh.Algorithm = 6) with a uniform
target size h, written as MSH 4.1 ASCII (gmsh's default format):

- square-hN.msh        the unit square [0, 1]^2, h = 1/N for N = 8, 16, 32, 64 (the
                        Fokker-Planck convergence family);
- square-h8-binary.msh the same mesh as square-h8.msh in MSH 4.1 binary (reader test);
- hole-h16.msh         [-1, 1]^2 with a disc of radius 0.3 centred at (0.2, 0) cut out
                        (crowd motion around an obstacle);
- disc-h16.msh         the disc of radius 1 (Barenblatt);
- cube-h4.msh          the unit cube in tetrahedra, h = 1/4, gmsh's default 3D mesh (Delaunay
                        then optimised: not Delaunay any more, refused with the faces named);
- cube-delaunay-hN.msh the unit cube, h = 1/N for N = 4, 8, 12, meshed by HXT
                        (Mesh.Algorithm3D = 10) without the optimiser (Mesh.Optimize = 0): a
                        Delaunay tetrahedralisation (co-spherical neighbours are agglomerated by
                        the reader) for the 3D Fokker-Planck study. (h = 1/16 is not made: HXT
                        leaves 2 flat tetrahedra at the cube's edges there, which are refused.)

Usage: .venv-mesh/bin/python data/meshes/make_meshes.py [OUT_DIR]
"""

import os
import sys

import gmsh


def start(name, h):
    gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.option.setNumber("Mesh.MeshSizeMin", h)
    gmsh.option.setNumber("Mesh.MeshSizeMax", h)
    # A fixed seed and one thread: the same file on every run.
    gmsh.option.setNumber("Mesh.RandomSeed", 1)
    gmsh.option.setNumber("General.NumThreads", 1)
    gmsh.model.add(name)


def finish(path, dim, binary=False):
    gmsh.model.occ.synchronize()
    gmsh.model.mesh.generate(dim)
    gmsh.option.setNumber("Mesh.Binary", 1 if binary else 0)
    gmsh.write(path)
    gmsh.finalize()


def square(out, n, binary=False):
    start(f"square-h{n}", 1.0 / n)
    gmsh.model.occ.addRectangle(0, 0, 0, 1, 1)
    suffix = "-binary" if binary else ""
    finish(os.path.join(out, f"square-h{n}{suffix}.msh"), 2, binary)


def hole(out, n):
    start(f"hole-h{n}", 2.0 / n)
    box = gmsh.model.occ.addRectangle(-1, -1, 0, 2, 2)
    disc = gmsh.model.occ.addDisk(0.2, 0, 0, 0.3, 0.3)
    gmsh.model.occ.cut([(2, box)], [(2, disc)])
    finish(os.path.join(out, f"hole-h{n}.msh"), 2)


def disc(out, n):
    start(f"disc-h{n}", 2.0 / n)
    gmsh.model.occ.addDisk(0, 0, 0, 1, 1)
    finish(os.path.join(out, f"disc-h{n}.msh"), 2)


def cube(out, n, delaunay=False):
    name = f"cube-delaunay-h{n}" if delaunay else f"cube-h{n}"
    start(name, 1.0 / n)
    if delaunay:
        # gmsh's optimiser (on by default) trades the Delaunay property for shape quality.
        gmsh.option.setNumber("Mesh.Algorithm3D", 10)
        gmsh.option.setNumber("Mesh.Optimize", 0)
    gmsh.model.occ.addBox(0, 0, 0, 1, 1, 1)
    finish(os.path.join(out, f"{name}.msh"), 3)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    os.makedirs(out, exist_ok=True)
    for n in (8, 16, 32, 64):
        square(out, n)
    square(out, 8, binary=True)
    hole(out, 16)
    disc(out, 16)
    cube(out, 4)
    for n in (4, 8, 12):
        cube(out, n, delaunay=True)


if __name__ == "__main__":
    main()
