"""Expected checksums of the datasets (copied from the data README's SHA256SUMS and arrays.sha256).

A file is accepted when its bytes match FILE_SHA256, or when every array the harness reads from it
matches ARRAY_SHA256 (sha256 of dtype + shape + raw bytes), so losslessly re-encoded copies pass too.
"""
FILE_SHA256 = {
    "FashionMNIST/raw/t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "FashionMNIST/raw/train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "FashionMNIST/raw/train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "MNIST/raw/t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "MNIST/raw/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "MNIST/raw/train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "MNIST/raw/train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "cifar10_jpeg.npz": "1e0e5444f2c441a97bb11ccb00f18026c02cee2461e311e8d7bbf4c9a5f560f5",
    "dtd_subset32.npz": "ba0cac9413264f7e49d6f3ed188358c69357f066711e9172097780a910361c33",
    "notmnist.npz": "a889307317e408a47fd74be78c2602077c100b3cd8252c85d2bcfa4ba6e71c24",
    "omniglot_small.npz": "b9faba6f95ffd2938ba2617a68352094e81b2d0345878713661fe8db0a281366",
    "tinyimagenet_val32.npz": "24e824f84c371df6a6b97bf26a7260a180c1279db0708d526004878da97924e0"
}

ARRAY_SHA256 = {
    "FashionMNIST/raw/t10k-images-idx3-ubyte.gz": "6d7ab2ce935c469faa42d20c1117e290b17100213d638fb4859563e8225200d4",
    "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz": "6de80c3f188b2b788631bfdb22fc369a133e3139aa511c6b71bd99ec0f26dff3",
    "FashionMNIST/raw/train-images-idx3-ubyte.gz": "6f07ec717f6d605a3631f18292874549f87f7371f532c5454ddeda9b6be1c061",
    "FashionMNIST/raw/train-labels-idx1-ubyte.gz": "6a348f3f2ae5584df432205898f7b22b360148f66b5d7107a5d68bd4e75514aa",
    "MNIST/raw/t10k-images-idx3-ubyte.gz": "466e162ffbb42e658cc9a6c072ed0b8b20928ba46ffabf0202af1257e2ab7627",
    "MNIST/raw/t10k-labels-idx1-ubyte.gz": "23a0930da10f8bbc2b67243d6873083abf37b109696ce832c679c6288392db67",
    "MNIST/raw/train-images-idx3-ubyte.gz": "999f7f2c04697214a2b318c932861e018c584c893b2340fb55ab7dcfcdd6d443",
    "MNIST/raw/train-labels-idx1-ubyte.gz": "9a31298500a93ebaea97f22822d89e5d92faa1b69768f7caeab99969c80bf95c",
    "cifar10_jpeg.npz:classes": "551b22433676d2c6bc4eda7bf8de539d5fe02574f88929f560a87ebf165fdae0",
    "cifar10_jpeg.npz:x_test": "cb0fd9f8d1373c5f059c9e1ce9ea2d16b362a6298c3017f3ec0c7e2a0869ad36",
    "cifar10_jpeg.npz:x_train_jpeg": "0cda597e9cc7ee00a9f52f2339d13c23c6d65599792ab342ce19247ef476cab0",
    "cifar10_jpeg.npz:x_train_jpeg_offsets": "a2077218fd8e878b41fc33c7501afc1bd58a204c7095d999496d602855af7874",
    "cifar10_jpeg.npz:y_test": "b3991514f1067597b86a94cdf2589a0161dd285a152cd983ebfc51da34652859",
    "cifar10_jpeg.npz:y_train": "bb0b701f8a20fcbf512886e722d5c396c58b000e845dd724d116c67cb2380933",
    "dtd_subset32.npz:classes": "9d9ff966e325bc1395b803ef1fd96cfc3714571e07f4e017d28173960eda306b",
    "dtd_subset32.npz:x_test": "7985767c7cca4d92fdc8cd49874b95396f5695038acd76b12cd6080a0c0d335f",
    "dtd_subset32.npz:y_test": "d6595683393a06dbaa9b7056280c061ded6493c5eb7aad3072124ae4f94bc467",
    "notmnist.npz:classes": "25ae95bd82e6e26ab8bbcc8d01d8ff9393c0100f5584619e1c0e00713feb9818",
    "notmnist.npz:x_test": "a577e057d3d04aaf68f5974060494937f292354024e75b95c92f6df297d9c709",
    "notmnist.npz:y_test": "ec1f900f34e9b11bf0be40d3b51060a0fc85d65e8a507f1b3674c1443a4818af",
    "omniglot_small.npz:classes": "7738d85969f6ba74dff18d3fa94318a5ba2529763522e0bde551536b07160af4",
    "omniglot_small.npz:x_test": "cfa5f22798ad65f90bd37649ebfdd358823c5ed567634b0759ec01e65bc3860c",
    "omniglot_small.npz:x_test_28": "8501b80d5cd30638e4fba417ad382d40193c5b6279e753b8e499f14e955b2797",
    "omniglot_small.npz:y_test": "c6acad05eca6dd6ea01a9cd6521c8852ef13e8a99835591d04a23747ee923b19",
    "tinyimagenet_val32.npz:class_words": "fec93f670dbfdd9181ca6e8b340f1564dca20face29788dd4de5195b3ca830e7",
    "tinyimagenet_val32.npz:classes": "86d71d01003ee76d57ba726776bdbaad35cf807db0d78b47a61466749228ed50",
    "tinyimagenet_val32.npz:x_test": "4b8258cbab78178e571d62d2222691da2170d42265741f36bbd07efe26e62e9b",
    "tinyimagenet_val32.npz:y_test": "aedfdb3caab2d350a09d01c4170f0f56f080b3c8c049495e95adefd186216bcb"
}
