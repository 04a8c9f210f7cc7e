"""Identity datasets: folder-per-identity trees and the embedded synthetic set."""

from legato_pl.data.datamodule import (
    ForgetRetainDataset,
    IdentityDataModule,
    IdentityImages,
    IdentityPretrainDataModule,
)
from legato_pl.data.folder import load_image, scan_identity_folder, split_heldout
from legato_pl.data.generated import GeneratedIdentityDataModule
from legato_pl.data.synthetic import synthetic_identities

__all__ = [
    "ForgetRetainDataset",
    "GeneratedIdentityDataModule",
    "IdentityDataModule",
    "IdentityImages",
    "IdentityPretrainDataModule",
    "load_image",
    "scan_identity_folder",
    "split_heldout",
    "synthetic_identities",
]
